//! Great-circle distance, and the round trip it costs at the speed of light in fibre.

/// A point on Earth in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinates {
    pub lat: f64,
    pub lon: f64,
}

const EARTH_RADIUS_KM: f64 = 6371.0;

/// Haversine distance in kilometres.
pub fn distance_km(a: Coordinates, b: Coordinates) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// A point on the unit sphere, for distances from one client to many regions with one set of
/// trigonometry per point (the router keeps each region's, and makes the client's once a plan).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitVector {
    x: f64,
    y: f64,
    z: f64,
}

impl From<Coordinates> for UnitVector {
    fn from(c: Coordinates) -> Self {
        let (lat, lon) = (c.lat.to_radians(), c.lon.to_radians());
        Self {
            x: lat.cos() * lon.cos(),
            y: lat.cos() * lon.sin(),
            z: lat.sin(),
        }
    }
}

/// Great-circle distance in kilometres between two unit vectors (the same as
/// [`distance_km`]: twice the arcsine of half the chord).
pub fn distance_km_between(a: UnitVector, b: UnitVector) -> f64 {
    let (dx, dy, dz) = (a.x - b.x, a.y - b.y, a.z - b.z);
    let chord = (dx * dx + dy * dy + dz * dz).sqrt();
    2.0 * EARTH_RADIUS_KM * (chord / 2.0).min(1.0).asin()
}

/// The round trip a distance costs in fibre (about 100 km per millisecond of round trip).
pub fn rtt_ms(km: f64) -> f64 {
    km / 100.0
}

/// A rough centre per continent code (as in Cloudflare's `request.cf.continent`), used when the
/// client's coordinates are unknown.
pub fn continent_centre(code: &str) -> Option<Coordinates> {
    let (lat, lon) = match code {
        "EU" => (50.0, 10.0),
        "NA" => (40.0, -95.0),
        "SA" => (-15.0, -60.0),
        "AS" => (30.0, 100.0),
        "AF" => (5.0, 20.0),
        "OC" => (-25.0, 135.0),
        "AN" => (-80.0, 0.0),
        _ => return None,
    };
    Some(Coordinates { lat, lon })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_vectors_give_the_haversine_distance() {
        let places = [
            (53.35, -6.26),
            (50.11, 8.68),
            (39.0, -77.5),
            (-33.87, 151.21),
            (35.68, 139.69),
        ];
        for &(la1, lo1) in &places {
            for &(la2, lo2) in &places {
                let (a, b) = (
                    Coordinates { lat: la1, lon: lo1 },
                    Coordinates { lat: la2, lon: lo2 },
                );
                let fast = distance_km_between(a.into(), b.into());
                assert!((fast - distance_km(a, b)).abs() < 0.01, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn dublin_to_frankfurt_is_about_1090_km() {
        let dublin = Coordinates {
            lat: 53.35,
            lon: -6.26,
        };
        let frankfurt = Coordinates {
            lat: 50.11,
            lon: 8.68,
        };
        let d = distance_km(dublin, frankfurt);
        assert!((1050.0..1120.0).contains(&d), "{d}");
        assert_eq!(distance_km(dublin, dublin), 0.0);
    }
}
