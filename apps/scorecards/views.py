"""The scorecard page of a charter and the AI pulse portfolio, with charts as inline SVG
(readable without JavaScript; every chart has a text alternative and a data table)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from apps.charters.selectors import charter_list_visible

from . import selectors
from .api.views import portfolio_csv

WIDTH, HEIGHT, PAD = 320, 120, 8
WINDOWS = (7, 28, 90)


def _scale(values, lo=None, hi=None):
    present = [v for v in values if v is not None]
    lo = min(present) if lo is None else lo
    hi = max(present) if hi is None else hi
    if hi == lo:
        hi = lo + 1
    return lambda v: HEIGHT - PAD - (v - lo) / (hi - lo) * (HEIGHT - 2 * PAD)


def trend_chart(metric: dict) -> dict | None:
    """Polyline of the weekly means with the target and baseline as reference lines."""
    series = metric["trend"]
    values = [p["value"] for p in series]
    present = [v for v in values if v is not None]
    if not present:
        return None
    refs = [r for r in (metric["target"], metric["baseline"], metric["guardrail"]) if r is not None]
    y = _scale(present + refs, min(present + refs), max(present + refs))
    step = (WIDTH - 2 * PAD) / max(1, len(series) - 1)
    points = [
        {
            "x": round(PAD + i * step, 1),
            "y": round(y(p["value"]), 1),
            "label": p["week"],
            "value": p["value"],
            "status": p["status"],
        }
        for i, p in enumerate(series)
        if p["value"] is not None
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "points": points,
        "polyline": " ".join(f"{p['x']},{p['y']}" for p in points),
        "target_y": round(y(metric["target"]), 1) if metric["target"] is not None else None,
        "baseline_y": round(y(metric["baseline"]), 1) if metric["baseline"] is not None else None,
        "guardrail_y": round(y(metric["guardrail"]), 1)
        if metric["guardrail"] is not None
        else None,
    }


def histogram_chart(metric: dict) -> dict | None:
    histogram = metric["histogram"]
    if not histogram:
        return None
    counts = histogram["counts"]
    top = max(counts) or 1
    width = (WIDTH - 2 * PAD) / len(counts)
    edges = histogram["edges"]
    bars = [
        {
            "x": round(PAD + i * width, 1),
            "width": round(width - 2, 1),
            "height": round(c / top * (HEIGHT - 2 * PAD), 1),
            "y": round(HEIGHT - PAD - c / top * (HEIGHT - 2 * PAD), 1),
            "count": c,
            "low": edges[i],
            "high": edges[i + 1],
        }
        for i, c in enumerate(counts)
    ]
    return {"width": WIDTH, "height": HEIGHT, "bars": bars}


@login_required
def scorecard(request, slug):
    charter = charter_list_visible(request.user).filter(slug=slug).first()
    if charter is None:
        raise Http404("No such charter.")
    try:
        window = int(request.GET.get("window", 28))
    except ValueError:
        window = 28
    window = window if window in WINDOWS else 28
    card = selectors.scorecard(charter, window_days=window)
    layers = []
    for layer, metrics in card["layers"].items():
        for metric in metrics:
            metric["trend_chart"] = trend_chart(metric)
            metric["histogram_chart"] = histogram_chart(metric)
        layers.append(
            {
                "key": layer,
                "label": layer.replace("_", " ").capitalize(),
                "metrics": metrics,
                "status": card["layer_status"][layer],
            }
        )
    return render(
        request,
        "scorecards/scorecard.html",
        {"charter": charter, "card": card, "layers": layers, "windows": WINDOWS, "window": window},
    )


@login_required
def portfolio(request):
    rows = selectors.portfolio(request.user)
    status, risk, call = (
        request.GET.get("status", ""),
        request.GET.get("risk", ""),
        request.GET.get("call", ""),
    )
    rows = [
        r
        for r in rows
        if (not status or r["status"] == status)
        and (not risk or r["risk_tier"] == risk)
        and (not call or r["call"] == call)
    ]
    sort = request.GET.get("sort", "title")
    if sort in {"title", "status", "risk_tier", "call", "open_approvals"}:
        rows.sort(
            key=lambda r: r[sort] if r[sort] is not None else "", reverse=sort == "open_approvals"
        )
    if request.GET.get("as") == "csv":
        return portfolio_csv(rows)
    return render(request, "scorecards/portfolio.html", {"rows": rows, "filters": request.GET})
