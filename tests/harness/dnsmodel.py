"""What a client of DNS failover (Route 53 health checks + latency records) would have seen during a
drill, computed from the drill's recorded health timeline. A model, not a measurement.

The model, per region and for one client near region A (so DNS prefers A while it is healthy):

1. A health checker calls the region's `/health` every `interval` seconds, at times
   phi + k*interval with an unknown phase phi in [0, interval). The region turns unhealthy after
   `threshold` consecutive failed checks (anything but 200, or no answer) and healthy again after
   `threshold` consecutive good ones (Route 53 uses one threshold both ways).
2. DNS answers the most preferred healthy region. When no region is healthy, Route 53 answers as if
   all were healthy (the preferred one).
3. The client's resolver keeps an answer for the TTL and asks again at psi + k*TTL, psi in [0, TTL).
   Route 53's own propagation delay (usually seconds) is left out: the model is optimistic.
4. A request at time t fails when the region the client holds at t cannot answer at all (its
   process is down). A region answering `/health` with 404 still serves requests, so moving
   clients away from it costs them nothing, but their writes keep landing there until they move.

For one outage that starts at t_fail, whose checks start failing at t_check <= t_fail, the client
leaves the region by t_check + threshold*interval + TTL at the latest, so

    error_seconds <= max(0, min(t_check + threshold*interval + TTL, t_back) - t_fail)

and on average the delay is (threshold - 1/2)*interval + TTL/2 instead of threshold*interval + TTL.
The code does not use the closed form: it replays the recorded timeline on a grid of (phi, psi)
and integrates `1[held region cannot answer at t]` over t in steps of `STEP_S`, which also covers
several outages, recoveries, and the case where the outage starts before the checks fail.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

STEP_S = 0.05
#: Grid of checker phases and resolver phases the mean and worst case are taken over.
PHI_STEPS = 10
PSI_STEPS = 12


@dataclass(frozen=True)
class DnsConfig:
    name: str
    interval_s: float
    threshold: int
    ttl_s: float

    def worst_delay_s(self) -> float:
        return self.threshold * self.interval_s + self.ttl_s

    def mean_delay_s(self) -> float:
        return (self.threshold - 0.5) * self.interval_s + self.ttl_s / 2


#: The seed's settings (10 s interval, threshold 1) and Route 53's defaults (30 s, 3), TTL 60 s.
CONFIGS = (DnsConfig("Route 53 10s x1, TTL 60s", 10.0, 1, 60.0),
           DnsConfig("Route 53 30s x3, TTL 60s", 30.0, 3, 60.0))


class Timeline:
    """Recorded `/health` answers per region: (t, status or None when nothing answered)."""

    def __init__(self, samples: list[tuple[float, str, int | None]]):
        self._t: dict[str, list[float]] = {}
        self._s: dict[str, list[int | None]] = {}
        for t, region, status in sorted(samples, key=lambda s: s[0]):
            self._t.setdefault(region, []).append(t)
            self._s.setdefault(region, []).append(status)

    def status(self, region: str, t: float) -> int | None:
        """The last recorded answer at or before t (the first one before any sample)."""
        times = self._t.get(region, [])
        if not times:
            return None
        i = bisect.bisect_right(times, t) - 1
        return self._s[region][max(i, 0)]

    def healthy(self, region: str, t: float) -> bool:
        return self.status(region, t) == 200

    def answers(self, region: str, t: float) -> bool:
        return self.status(region, t) is not None


def _dns_health(timeline: Timeline, region: str, cfg: DnsConfig, phi: float, t0: float,
                t1: float) -> list[tuple[float, bool]]:
    """(time, healthy) changes of one region as the modelled checker sees it, from t0 (healthy)."""
    changes = [(t0, True)]
    healthy, run = True, 0
    t = t0 + phi
    while t <= t1:
        ok = timeline.healthy(region, t)
        if ok != healthy:
            run += 1
            if run >= cfg.threshold:
                healthy, run = ok, 0
                changes.append((t, healthy))
        else:
            run = 0
        t += cfg.interval_s
    return changes


def _at(changes: list[tuple[float, bool]], t: float) -> bool:
    i = bisect.bisect_right([c[0] for c in changes], t) - 1
    return changes[max(i, 0)][1]


def simulate(timeline: Timeline, preference: list[str], cfg: DnsConfig, phi: float, psi: float,
             t0: float, t1: float) -> list[bool]:
    """For each step of STEP_S from t0 to t1: True when the modelled client fails at that time."""
    health = {r: _dns_health(timeline, r, cfg, phi, t0, t1) for r in preference}

    def answer(t: float) -> str:
        for region in preference:
            if _at(health[region], t):
                return region
        return preference[0]

    failing = []
    held = answer(t0)
    next_resolve = t0 + psi
    steps = int(round((t1 - t0) / STEP_S))
    for i in range(steps):
        t = t0 + i * STEP_S
        while t >= next_resolve:
            held = answer(next_resolve)
            next_resolve += cfg.ttl_s
        failing.append(not timeline.answers(held, t))
    return failing


def evaluate(timeline: Timeline, preference: list[str], cfg: DnsConfig, t0: float, t1: float,
             windows: list[tuple[float, float]], request_times: list[float]) -> dict:
    """Error seconds and failed requests per window (mean and worst over the phase grid), and
    the share of cases failing at each step (for the chart)."""
    runs = []
    for i in range(PHI_STEPS):
        for j in range(PSI_STEPS):
            phi = cfg.interval_s * i / PHI_STEPS
            psi = cfg.ttl_s * j / PSI_STEPS
            runs.append(simulate(timeline, preference, cfg, phi, psi, t0, t1))
    steps = len(runs[0]) if runs else 0

    def index(t: float) -> int:
        return min(max(int((t - t0) / STEP_S), 0), steps - 1)

    per_window = []
    for start, end in windows:
        lo, hi = index(start), index(end)
        seconds = [sum(run[lo:hi]) * STEP_S for run in runs]
        sent = [t for t in request_times if start <= t < end]
        failed = [sum(run[index(t)] for t in sent) for run in runs]
        per_window.append({
            "error_s_mean": round(sum(seconds) / len(runs), 2),
            "error_s_worst": round(max(seconds), 2),
            "failed_requests_mean": round(sum(failed) / len(runs), 1),
            "failed_requests_worst": max(failed),
            "requests": len(sent),
        })
    share = [sum(run[k] for run in runs) / len(runs) for k in range(steps)]
    return {
        "config": {"interval_s": cfg.interval_s, "threshold": cfg.threshold, "ttl_s": cfg.ttl_s},
        "worst_delay_s": cfg.worst_delay_s(),
        "mean_delay_s": cfg.mean_delay_s(),
        "windows": per_window,
        "failing_share": share,
        "step_s": STEP_S,
    }
