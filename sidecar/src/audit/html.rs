//! The audit's self-contained HTML page: no network, charts as inline SVG.

use super::report::{AgeHistogram, InvalidationLag, Report};
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart of `(label, value, shown text, colour)`; bars scale to
/// `max` (the largest value when None).
fn hbars(items: &[(String, f64, String, &str)], max: Option<f64>, label_w: usize) -> String {
    let max = max
        .unwrap_or_else(|| items.iter().map(|i| i.1).fold(0.0, f64::max))
        .max(1e-9);
    let h = 30 * items.len() + 10;
    let bar_w = 700usize.saturating_sub(label_w + 90) as f64;
    let mut s =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="700" height="{h}" role="img">"#);
    for (i, (label, v, shown, colour)) in items.iter().enumerate() {
        let y = 8 + i * 30;
        let w = (v / max * bar_w).max(if *v > 0.0 { 2.0 } else { 0.0 });
        let _ = write!(
            s,
            r#"<text x="0" y="{ty}" font-size="13">{label}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="22" fill="{colour}"/><text x="{tx:.1}" y="{ty}" font-size="13">{shown}</text>"#,
            ty = y + 16,
            label = esc(label),
            tx = label_w as f64 + w + 6.0,
            shown = esc(shown),
        );
    }
    s.push_str("</svg>");
    s
}

/// A vertical histogram of `(bucket label, count)`.
fn histogram(buckets: &[(String, u64)], colour: &str) -> String {
    let max = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let col = 76;
    let w = col * buckets.len() + 20;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="190" role="img"><line x1="10" y1="150" x2="{}" y2="150" stroke="gray"/>"#,
        w - 10
    );
    for (i, (label, n)) in buckets.iter().enumerate() {
        let x = 14 + i * col;
        let h = (*n as f64 / max * 120.0).max(if *n > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{:.1}" width="{}" height="{h:.1}" fill="{colour}"/><text x="{}" y="{:.1}" font-size="12" text-anchor="middle">{n}</text><text x="{}" y="168" font-size="11" text-anchor="middle">{}</text>"#,
            150.0 - h,
            col - 10,
            x + (col - 10) / 2,
            145.0 - h,
            x + (col - 10) / 2,
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

fn secs_label(s: f64) -> String {
    if s >= 86400.0 {
        format!("{:.0}d", s / 86400.0)
    } else if s >= 3600.0 {
        format!("{:.0}h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.0}m", s / 60.0)
    } else if s >= 1.0 {
        format!("{s:.0}s")
    } else {
        format!("{:.0}ms", s * 1000.0)
    }
}

fn age_chart(h: &AgeHistogram) -> String {
    let mut b: Vec<(String, u64)> = Vec::new();
    for (i, n) in h.counts.iter().enumerate() {
        let label = match h.le_secs.get(i) {
            Some(le) => format!("≤{}", secs_label(*le)),
            None => format!(">{}", secs_label(h.le_secs.last().copied().unwrap_or(0.0))),
        };
        b.push((label, *n));
    }
    b.push(("unknown".into(), h.unknown));
    histogram(&b, "#e63946")
}

fn lag_chart(l: &InvalidationLag) -> String {
    // /status gives cumulative counts; the chart shows each bucket's own.
    let mut b: Vec<(String, u64)> = Vec::new();
    let mut prev = 0;
    for (le, c) in l.le_secs.iter().zip(&l.counts) {
        b.push((format!("≤{}", secs_label(*le)), c.saturating_sub(prev)));
        prev = *c;
    }
    let last = l.le_secs.last().copied().unwrap_or(0.0);
    b.push((
        format!(">{}", secs_label(last)),
        l.count.saturating_sub(prev),
    ));
    histogram(&b, "#457b9d")
}

/// Renders the report page.
pub fn render(r: &Report) -> String {
    let t = &r.totals;
    let mut h = String::from(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>Coherent audit</title><style>
body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px;vertical-align:top}th{background:#eee}
.big{font-size:28px;font-weight:bold}.card{display:inline-block;margin:0 24px 12px 0}
code{font-size:12px;word-break:break-all}.note{color:#8a5a00;background:#fff6e0;padding:6px 10px;margin:4px 0}
.muted{color:#666;font-size:13px}</style></head><body><h1>Coherent cache audit</h1>"#,
    );
    let _ = write!(
        h,
        r#"<div class="card"><div class="big" id="sum-consistency">{:.6}</div>consistency</div><div class="card"><div class="big" id="sum-nines">{:.2}</div>nines</div><div class="card"><div class="big" id="sum-rows">{}</div>rows scanned</div><div class="card"><div class="big" id="sum-stale">{}</div>stale</div><div class="card"><div class="big" id="sum-orphan">{}</div>orphan</div><div class="card"><div class="big" id="sum-rechecked">{}</div>rechecked</div><div class="card"><div class="big">{:.1} s</div>duration</div>"#,
        r.consistency, r.nines, t.rows, t.stale, t.orphan, r.rechecked, r.duration_secs
    );
    for n in &r.notes {
        let _ = write!(h, r#"<div class="note">{}</div>"#, esc(n));
    }
    h.push_str(r#"<h2>Keys per class</h2><div id="chart-classes">"#);
    let class =
        |name: &str, v: u64, c: &'static str| (name.to_string(), v as f64, v.to_string(), c);
    h.push_str(&hbars(
        &[
            class("consistent", t.consistent, "#2a9d8f"),
            class("stale", t.stale, "#e63946"),
            class("orphan", t.orphan, "#f4a261"),
            class("missing", t.missing, "#8d99ae"),
            class("unchecked", t.unchecked, "#b8c0cc"),
        ],
        None,
        100,
    ));
    h.push_str("</div>");
    let _ = write!(
        h,
        r#"<p class="muted">{} keys first found stale or orphan were re-read because their row changed during the scan (binlog); {} keys changed during the scan.</p>"#,
        r.rechecked,
        r.changed_during_scan
            .map_or("an unknown number of".into(), |n| n.to_string())
    );
    h.push_str("<h2>Staleness age</h2>");
    if r.staleness_age.total() == 0 {
        h.push_str(r#"<p class="muted">No stale key.</p>"#);
    } else {
        h.push_str(
            r#"<p class="muted">How long ago each stale value was written (engine: OBJECT WRITTEN; Redis: the lease fill's <code>written</code>).</p>"#,
        );
        let _ = write!(
            h,
            r#"<div id="chart-age">{}</div>"#,
            age_chart(&r.staleness_age)
        );
    }
    h.push_str("<h2>Invalidation lag</h2>");
    match &r.invalidation_lag {
        Some(l) => {
            let mean = if l.count > 0 {
                l.sum_secs / l.count as f64
            } else {
                0.0
            };
            let _ = write!(
                h,
                r#"<p class="muted">Commit to delete applied, {} sampled keys, mean {:.1} ms (from {}).</p>"#,
                l.count,
                mean * 1000.0,
                esc(&l.source)
            );
            let _ = write!(h, r#"<div id="chart-lag">{}</div>"#, lag_chart(l));
        }
        None => h.push_str(r#"<p class="muted">No sidecar reachable: no invalidation lag.</p>"#),
    }
    h.push_str("<h2>Worst tables</h2>");
    let worst: Vec<(String, f64, String, &str)> = r
        .tables
        .iter()
        .take(15)
        .map(|tb| {
            let colour = if tb.consistency >= 1.0 {
                "#2a9d8f"
            } else if tb.consistency >= 0.99 {
                "#f4a261"
            } else {
                "#e63946"
            };
            (
                format!("{} {}", tb.table, tb.key),
                tb.consistency,
                format!("{:.4}%", tb.consistency * 100.0),
                colour,
            )
        })
        .collect();
    let _ = write!(
        h,
        r#"<div id="chart-worst">{}</div>"#,
        hbars(&worst, Some(1.0), 260)
    );
    h.push_str("<table id=\"tables\"><tr><th>table</th><th>key</th><th>rows</th><th>consistent</th><th>stale</th><th>orphan</th><th>missing</th><th>unchecked</th><th>rechecked</th><th>consistency</th></tr>");
    for tb in &r.tables {
        let c = &tb.counts;
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.6}</td></tr>",
            esc(&tb.table),
            esc(&tb.key),
            if tb.compared {
                ""
            } else {
                r#" <span class="muted">(not compared by value)</span>"#
            },
            c.rows,
            c.consistent,
            c.stale,
            c.orphan,
            c.missing,
            c.unchecked,
            tb.rechecked,
            tb.consistency
        );
    }
    let started = r.started_ms as i64;
    h.push_str("</table><h2>Stale keys</h2><table id=\"stale-keys\"><tr><th>table</th><th>key</th><th>cached</th><th>row</th><th>written (Unix ms)</th><th>age at audit</th></tr>");
    for tb in &r.tables {
        for s in &tb.stale_keys {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&tb.table),
                esc(&s.key),
                esc(&s.cached),
                esc(&s.expected),
                s.written_ms.map_or("-".into(), |w| w.to_string()),
                s.written_ms.map_or("-".into(), |w| secs_label(
                    (started - w).max(0) as f64 / 1000.0
                ))
            );
        }
    }
    h.push_str(
        "</table><h2>Orphan keys</h2><table id=\"orphan-keys\"><tr><th>table</th><th>key</th></tr>",
    );
    for tb in &r.tables {
        for k in &tb.orphan_keys {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                esc(&tb.table),
                esc(k)
            );
        }
    }
    h.push_str("</table></body></html>\n");
    h
}
