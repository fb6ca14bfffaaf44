//! Configuration read once from the environment at start-up. A bad value fails start-up with one
//! clear line; nothing here is read again on a request path.

use std::net::SocketAddr;

use crate::api::caller::OriginGuard;
use crate::origin_auth::OriginKey;

/// What the function needs to run, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The AWS region this copy serves (`AWS_REGION`, set by Lambda).
    pub region: String,
    /// The global table's name (`TABLE_NAME`, or the seed's `tablename`).
    pub table: String,
    /// The status `/health` answers with (`STATUS`, default 200). 404 sends traffic away.
    pub status: u16,
    /// Where the local HTTP server listens (`LISTEN_ADDR`, default `127.0.0.1:8080`; port 0 picks one).
    pub listen_addr: SocketAddr,
    /// Enables the admin route when set (`ADMIN_TOKEN`, at least 16 characters). Off by default.
    pub admin_token: Option<String>,
    /// True when running inside Lambda (`AWS_LAMBDA_RUNTIME_API` is set).
    pub in_lambda: bool,
    /// How the edge is recognised. Locally: `SIGV4_ACCESS_KEY_ID` and `SIGV4_SECRET_ACCESS_KEY`
    /// (both or neither) make every route but `/health` and the admin route require the edge's
    /// signature. In Lambda: `EDGE_CALLER_ARN` makes them require that API Gateway's verified
    /// caller is the edge's IAM user. Neither set: open.
    pub origin_guard: OriginGuard,
    /// The most JSON a listing page holds (`LIST_PAGE_MAX_BYTES`, 1,024 to 3,000,000, default
    /// 2 MiB): a page is cut there, with a cursor at the cut, so it stays within what Lambda
    /// passes back (6 MB), the body escaped inside its envelope (every `"` and `\` doubled: at
    /// worst twice the size).
    pub list_page_max_bytes: usize,
}

/// Default [`Config::list_page_max_bytes`].
pub const LIST_PAGE_MAX_BYTES: usize = 2 * 1024 * 1024;

/// A configuration problem, worded for the one line printed at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("STATUS must be an HTTP status code between 100 and 599, got {0:?}")]
    BadStatus(String),
    #[error("LISTEN_ADDR must be an address like 127.0.0.1:8080, got {0:?}")]
    BadListenAddr(String),
    #[error("ADMIN_TOKEN must be at least 16 characters (or unset to disable the admin route)")]
    WeakAdminToken,
    #[error("SIGV4_ACCESS_KEY_ID and SIGV4_SECRET_ACCESS_KEY must be set together")]
    HalfOriginKey,
    #[error("EDGE_CALLER_ARN must be an IAM ARN (arn:aws...:iam::...), got {0:?}")]
    BadCallerArn(String),
    #[error("LIST_PAGE_MAX_BYTES must be a whole number of bytes from 1024 to 3000000, got {0:?}")]
    BadPageBytes(String),
}

/// Smallest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl Config {
    /// Reads the configuration from `(name, value)` pairs (the process environment in `main`).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let get = |name: &str| vars.get(name).map(|v| v.trim().to_owned());

        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or(ConfigError::Missing("AWS_REGION"))?;
        let table = get("TABLE_NAME")
            .or_else(|| get("tablename"))
            .ok_or(ConfigError::Missing("TABLE_NAME"))?;
        let status = match get("STATUS") {
            None => 200,
            Some(raw) => parse_status(&raw).ok_or(ConfigError::BadStatus(raw))?,
        };
        let listen_addr = match get("LISTEN_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(raw) => raw.parse().map_err(|_| ConfigError::BadListenAddr(raw))?,
        };
        let admin_token = match get("ADMIN_TOKEN") {
            Some(token) if token.len() < MIN_ADMIN_TOKEN_LEN => {
                return Err(ConfigError::WeakAdminToken);
            }
            token => token,
        };
        let list_page_max_bytes = match get("LIST_PAGE_MAX_BYTES") {
            None => LIST_PAGE_MAX_BYTES,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1024..=3_000_000).contains(n))
                .ok_or(ConfigError::BadPageBytes(raw))?,
        };
        let in_lambda = get("AWS_LAMBDA_RUNTIME_API").is_some();
        let origin_guard = if in_lambda {
            match get("EDGE_CALLER_ARN") {
                None => OriginGuard::Open,
                Some(arn) if arn.starts_with("arn:aws") && arn.contains(":iam::") => {
                    OriginGuard::LambdaCaller(arn)
                }
                Some(arn) => return Err(ConfigError::BadCallerArn(arn)),
            }
        } else {
            match (get("SIGV4_ACCESS_KEY_ID"), get("SIGV4_SECRET_ACCESS_KEY")) {
                (None, None) => OriginGuard::Open,
                (Some(id), Some(secret)) => {
                    OriginGuard::Signature(OriginKey::new(&id, &secret, &region))
                }
                _ => return Err(ConfigError::HalfOriginKey),
            }
        };
        Ok(Self {
            region,
            table,
            status,
            listen_addr,
            admin_token,
            in_lambda,
            origin_guard,
            list_page_max_bytes,
        })
    }
}

/// Parses an HTTP status code in 100..=599.
pub fn parse_status(raw: &str) -> Option<u16> {
    raw.trim()
        .parse::<u16>()
        .ok()
        .filter(|s| (100..=599).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![("AWS_REGION", "eu-west-1"), ("TABLE_NAME", "items")]
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_vars(base()).unwrap();
        assert_eq!(c.status, 200);
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin_token, None);
        assert!(!c.in_lambda);
        assert_eq!(c.list_page_max_bytes, LIST_PAGE_MAX_BYTES);
    }

    #[test]
    fn the_page_size_is_bounded() {
        let with = |v: &'static str| {
            Config::from_vars([base(), vec![("LIST_PAGE_MAX_BYTES", v)]].concat())
        };
        assert_eq!(with("4096").unwrap().list_page_max_bytes, 4096);
        for bad in ["0", "1023", "3000001", "3MB", "-1"] {
            assert_eq!(
                with(bad).unwrap_err(),
                ConfigError::BadPageBytes(bad.into())
            );
        }
    }

    #[test]
    fn seed_tablename_is_accepted() {
        let c = Config::from_vars([("AWS_REGION", "eu-west-1"), ("tablename", "seed")]).unwrap();
        assert_eq!(c.table, "seed");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let mut v = base();
        v.push(("STATUS", "forty"));
        let err = Config::from_vars(v).unwrap_err();
        assert!(err.to_string().starts_with("STATUS must be"));
        assert_eq!(
            Config::from_vars([("TABLE_NAME", "t")]).unwrap_err(),
            ConfigError::Missing("AWS_REGION")
        );
        let mut v = base();
        v.push(("ADMIN_TOKEN", "short"));
        assert_eq!(
            Config::from_vars(v).unwrap_err(),
            ConfigError::WeakAdminToken
        );
    }

    #[test]
    fn origin_protection_is_read_per_platform() {
        assert_eq!(
            Config::from_vars(base()).unwrap().origin_guard,
            OriginGuard::Open
        );
        let mut v = base();
        v.extend([
            ("SIGV4_ACCESS_KEY_ID", "AKID"),
            ("SIGV4_SECRET_ACCESS_KEY", "s3cret"),
        ]);
        assert_eq!(
            Config::from_vars(v).unwrap().origin_guard,
            OriginGuard::Signature(OriginKey::new("AKID", "s3cret", "eu-west-1"))
        );
        let mut v = base();
        v.push(("SIGV4_ACCESS_KEY_ID", "AKID"));
        assert_eq!(
            Config::from_vars(v).unwrap_err(),
            ConfigError::HalfOriginKey
        );
        let arn = "arn:aws:iam::123456789012:user/tandem-edge";
        let mut v = base();
        v.extend([
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("EDGE_CALLER_ARN", arn),
        ]);
        assert_eq!(
            Config::from_vars(v).unwrap().origin_guard,
            OriginGuard::LambdaCaller(arn.to_owned())
        );
        let mut v = base();
        v.extend([("AWS_LAMBDA_RUNTIME_API", "x"), ("EDGE_CALLER_ARN", "edge")]);
        assert!(matches!(
            Config::from_vars(v).unwrap_err(),
            ConfigError::BadCallerArn(_)
        ));
    }

    #[test]
    fn status_404_is_kept() {
        let mut v = base();
        v.push(("STATUS", "404"));
        assert_eq!(Config::from_vars(v).unwrap().status, 404);
    }
}
