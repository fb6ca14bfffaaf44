"""The drill's chart as a hand-written SVG: per target, requests per second stacked by serving
region with conflicts reported to writers (412/409) and client-visible errors on top, and p99
latency per second below; one strip per DNS model with the share of cases in which a client
would fail; phase boundaries across everything, the phase with replication paused shaded."""

from __future__ import annotations

import math
from html import escape

WIDTH = 1100
LEFT, RIGHT = 70, 190
RPS_H, P99_H, STRIP_H, GAP = 130, 60, 26, 34
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2"]
ERROR = "#e15759"
CONFLICT = "#edc948"
OTHER = "#bab0ac"
PAUSED_FILL = "#f2f2f2"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _nice(value: float) -> float:
    """A round axis maximum at or above value."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= value:
            return m * exp
    return 10 * exp


def render(duration_s: float, phases: list[dict], targets: list[str], regions: list[str],
           records: list[dict], dns: dict[str, list[float]], dns_step_s: float,
           title: str) -> str:
    """`records`: dicts with target, t_send, ok, conflict (optional), served_by, latency_ms.
    `phases`: dicts with n, name, start_s, end_s, and `replication: "paused"` for the shaded one.
    `dns`: model name -> failing share per step."""
    seconds = max(1, math.ceil(duration_s))
    colours = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(regions)}
    buckets = {t: [dict() for _ in range(seconds)] for t in targets}
    latencies = {t: [[] for _ in range(seconds)] for t in targets}
    for r in records:
        if r["target"] not in buckets:
            continue
        i = min(seconds - 1, max(0, int(r["t_send"])))
        if r["ok"]:
            key = r["served_by"] if r["served_by"] in colours else "other"
        else:
            key = "conflict" if r.get("conflict") else "error"
        buckets[r["target"]][i][key] = buckets[r["target"]][i].get(key, 0) + 1
        latencies[r["target"]][i].append(r["latency_ms"])
    rps_max = _nice(max((sum(b.values()) for t in targets for b in buckets[t]), default=1))
    p99s = {t: [_percentile(v, 0.99) for v in latencies[t]] for t in targets}
    p99_max = _nice(max((p for t in targets for p in p99s[t]), default=1))

    plot_w = WIDTH - LEFT - RIGHT
    x = lambda s: LEFT + plot_w * s / seconds  # noqa: E731
    height = 74 + len(targets) * (RPS_H + P99_H + GAP) + len(dns) * (STRIP_H + 8) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    legend = ([(r, colours[r]) for r in regions]
              + [("conflict (412/409)", CONFLICT), ("client-visible error", ERROR), ("other", OTHER),
                 ("replication paused", PAUSED_FILL)])
    lx = LEFT
    for name, colour in legend:
        out.append(f'<rect x="{lx}" y="32" width="10" height="10" fill="{colour}" stroke="#999" stroke-width="0.5"/>'
                   f'<text x="{lx + 14}" y="41">{escape(name)}</text>')
        lx += 24 + 7 * len(name)
    y = 74
    body_top = y
    shade_at = len(out)  # the paused phase's band goes under everything drawn after it
    for target in targets:
        top = y
        out.append(f'<text x="{WIDTH - RIGHT + 10}" y="{top + 14}" font-weight="bold">{escape(target)}</text>'
                   f'<text x="{WIDTH - RIGHT + 10}" y="{top + 30}">requests/s by region</text>'
                   f'<text x="{WIDTH - RIGHT + 10}" y="{top + RPS_H + 30}">p99 latency (ms)</text>')
        out.append(f'<line x1="{LEFT}" y1="{top + RPS_H}" x2="{LEFT + plot_w}" y2="{top + RPS_H}" stroke="#444"/>')
        out.append(f'<text x="{LEFT - 6}" y="{top + 8}" text-anchor="end">{rps_max:g}</text>'
                   f'<text x="{LEFT - 6}" y="{top + RPS_H}" text-anchor="end">0</text>')
        bar_w = max(1.0, plot_w / seconds - 0.5)
        for i, bucket in enumerate(buckets[target]):
            base = top + RPS_H
            for key in regions + ["other", "conflict", "error"]:
                n = bucket.get(key, 0)
                if not n:
                    continue
                h = RPS_H * n / rps_max
                base -= h
                colour = colours.get(key, {"error": ERROR, "conflict": CONFLICT}.get(key, OTHER))
                out.append(f'<rect x="{x(i):.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                           f'fill="{colour}"><title>{target} t={i}s {key}: {n}</title></rect>')
        ptop = top + RPS_H + 8
        out.append(f'<line x1="{LEFT}" y1="{ptop + P99_H}" x2="{LEFT + plot_w}" y2="{ptop + P99_H}" stroke="#444"/>'
                   f'<text x="{LEFT - 6}" y="{ptop + 8}" text-anchor="end">{p99_max:g}</text>'
                   f'<text x="{LEFT - 6}" y="{ptop + P99_H}" text-anchor="end">0</text>')
        points = " ".join(f"{x(i + 0.5):.1f},{ptop + P99_H - P99_H * min(p, p99_max) / p99_max:.1f}"
                          for i, p in enumerate(p99s[target]) if latencies[target][i])
        out.append(f'<polyline points="{points}" fill="none" stroke="#333" stroke-width="1.3"/>')
        y = ptop + P99_H + GAP
    for name, share in dns.items():
        out.append(f'<text x="{WIDTH - RIGHT + 10}" y="{y + 16}">{escape(name)}</text>'
                   f'<rect x="{LEFT}" y="{y}" width="{plot_w}" height="{STRIP_H}" fill="none" stroke="#ccc"/>')
        per_second = max(1, int(round(1 / dns_step_s)))
        for i in range(0, len(share), per_second):
            chunk = share[i:i + per_second]
            level = sum(chunk) / len(chunk)
            if level > 0:
                s = i * dns_step_s
                out.append(f'<rect x="{x(s):.1f}" y="{y}" width="{plot_w / seconds:.1f}" height="{STRIP_H}" '
                           f'fill="{ERROR}" fill-opacity="{level:.2f}"><title>{escape(name)} t={s:.0f}s: '
                           f'{level:.0%} of cases failing</title></rect>')
        y += STRIP_H + 8
    bottom = y
    for phase in phases:
        if phase.get("replication") == "paused":
            x0, x1 = x(phase["start_s"]), x(phase.get("end_s", duration_s))
            out.insert(shade_at, f'<rect x="{x0:.1f}" y="{body_top}" width="{max(0.0, x1 - x0):.1f}" '
                                 f'height="{bottom - body_top}" fill="{PAUSED_FILL}"/>')
    for tick in range(0, seconds + 1, 10 if seconds > 30 else 2):
        out.append(f'<text x="{x(tick):.1f}" y="{bottom + 14}" text-anchor="middle">{tick}s</text>')
    for i, phase in enumerate(phases):
        px = x(phase["start_s"])
        label_y = 58 + 11 * (i % 2)  # every other label lower: short phases' labels do not overlap
        out.append(f'<line x1="{px:.1f}" y1="50" x2="{px:.1f}" y2="{bottom}" stroke="#222" '
                   f'stroke-dasharray="4,3"/>'
                   f'<text x="{px + 3:.1f}" y="{label_y}" font-size="10">{phase["n"]}: {escape(phase["name"])}</text>')
    out.append("</svg>")
    return "\n".join(out)
