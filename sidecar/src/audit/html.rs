//! The audit's self-contained HTML page: no network, charts as inline SVG.

use super::report::Report;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart of `(label, value, colour)`.
fn bars(items: &[(&str, u64, &str)]) -> String {
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1) as f64;
    let h = 34 * items.len() + 10;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="{h}" role="img" aria-label="keys per class">"#
    );
    for (i, (label, v, colour)) in items.iter().enumerate() {
        let y = 10 + i * 34;
        let w = (*v as f64 / max * 440.0).max(if *v > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            s,
            r#"<text x="0" y="{}" font-size="14">{}</text><rect x="100" y="{}" width="{w:.1}" height="24" fill="{colour}"/><text x="{:.1}" y="{}" font-size="14">{v}</text>"#,
            y + 17,
            esc(label),
            y,
            110.0 + w,
            y + 17
        );
    }
    s.push_str("</svg>");
    s
}

/// Renders the report page.
pub fn render(r: &Report) -> String {
    let t = &r.totals;
    let mut h = String::from(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>Coherent audit</title><style>
body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px}th{background:#eee}
.big{font-size:28px;font-weight:bold}.card{display:inline-block;margin:0 24px 12px 0}
code{font-size:12px}</style></head><body><h1>Coherent cache audit</h1>"#,
    );
    let _ = write!(
        h,
        r#"<div class="card"><div class="big">{:.6}</div>consistency</div><div class="card"><div class="big">{:.2}</div>nines</div><div class="card"><div class="big">{}</div>rows scanned</div><div class="card"><div class="big">{:.1} s</div>duration</div>"#,
        r.consistency, r.nines, t.rows, r.duration_secs
    );
    h.push_str("<h2>Keys per class</h2>");
    h.push_str(&bars(&[
        ("consistent", t.consistent, "#2a9d8f"),
        ("stale", t.stale, "#e63946"),
        ("orphan", t.orphan, "#f4a261"),
        ("missing", t.missing, "#8d99ae"),
    ]));
    h.push_str("<h2>Tables, worst first</h2><table><tr><th>table</th><th>key</th><th>rows</th><th>consistent</th><th>stale</th><th>orphan</th><th>missing</th><th>consistency</th></tr>");
    for tb in &r.tables {
        let c = &tb.counts;
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.6}</td></tr>",
            esc(&tb.table),
            esc(&tb.key),
            c.rows,
            c.consistent,
            c.stale,
            c.orphan,
            c.missing,
            tb.consistency
        );
    }
    h.push_str("</table><h2>Stale keys</h2><table><tr><th>table</th><th>key</th><th>cached</th><th>row</th><th>written</th></tr>");
    for tb in &r.tables {
        for s in &tb.stale_keys {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&tb.table),
                esc(&s.key),
                esc(&s.cached),
                esc(&s.expected),
                s.written_ms.map_or("-".into(), |w| w.to_string())
            );
        }
    }
    h.push_str("</table><h2>Orphan keys</h2><table><tr><th>table</th><th>key</th></tr>");
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
