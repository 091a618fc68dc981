//! SVG plots (plotters): a box plot per group (whiskers at the Tukey fences, outliers as dots), CDFs of
//! startup, scaling curves and strata's per-phase stacked bars. File names are returned for the report.

use std::path::Path;

use plotters::prelude::*;

use super::ReportError;
use super::json::{GroupResult, Results, Status};
use crate::cases::Family;
use crate::stats;

/// Plots written, as paths relative to the results folder.
#[derive(Default, Debug)]
pub struct Plots {
    /// (group id, file)
    pub per_group: Vec<(String, String)>,
    pub startup_cdf: Option<String>,
    pub phases: Option<String>,
    pub scaling: Vec<String>,
}

impl Plots {
    pub fn for_group(&self, id: &str) -> Option<&str> {
        self.per_group
            .iter()
            .find(|(g, _)| g == id)
            .map(|(_, f)| f.as_str())
    }
}

const W: u32 = 900;

fn palette(i: usize) -> RGBColor {
    // Sixteen distinct colours: the startup group has twelve subjects, and with ten the CDF gave floor and
    // podman-crun one colour.
    const C: [RGBColor; 16] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 0),
        RGBColor(128, 0, 0),
        RGBColor(0, 0, 128),
        RGBColor(0, 128, 128),
        RGBColor(255, 187, 120),
        RGBColor(152, 223, 138),
    ];
    C[i % C.len()]
}

fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        + ".svg"
}

fn plot_err(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |problem| ReportError::Plot {
        path: path.display().to_string(),
        problem,
    }
}

/// Unit for axes given the largest value (ns).
fn unit(max_ns: f64) -> (f64, &'static str) {
    if max_ns >= 1e9 {
        (1e9, "s")
    } else if max_ns >= 1e6 {
        (1e6, "ms")
    } else if max_ns >= 1e3 {
        (1e3, "µs")
    } else {
        (1.0, "ns")
    }
}

pub fn render_all(dir: &Path, results: &Results) -> Result<Plots, ReportError> {
    let mut plots = Plots::default();
    for g in &results.groups {
        if g.cases.iter().any(|c| !c.samples.is_empty()) {
            let name = file_name(&g.id());
            box_plot(&dir.join(&name), g).map_err(plot_err(&dir.join(&name)))?;
            plots.per_group.push((g.id(), format!("plots/{name}")));
        }
    }
    if let Some(g) = results
        .groups
        .iter()
        .find(|g| g.family == Family::Startup && g.name == "true")
        && g.cases.iter().any(|c| !c.samples.is_empty())
    {
        let p = dir.join("startup-cdf.svg");
        cdf(&p, g).map_err(plot_err(&p))?;
        plots.startup_cdf = Some("plots/startup-cdf.svg".into());
        if g.cases.iter().any(|c| !c.parts.is_empty()) {
            let p = dir.join("startup-phases.svg");
            phases(&p, g).map_err(plot_err(&p))?;
            plots.phases = Some("plots/startup-phases.svg".into());
        }
    }
    for (prefix, title) in [
        ("open-loop", "open-loop: mean latency from scheduled start"),
        ("closed-loop", "closed-loop: mean latency"),
    ] {
        let gs: Vec<&GroupResult> = results
            .groups
            .iter()
            .filter(|g| {
                g.family == Family::Scaling && g.name.starts_with(prefix) && g.name.contains("n=")
            })
            .collect();
        if gs
            .iter()
            .any(|g| g.cases.iter().any(|c| !c.samples.is_empty()))
        {
            let name = format!("scaling-{prefix}.svg");
            let p = dir.join(&name);
            scaling(&p, title, &gs).map_err(plot_err(&p))?;
            plots.scaling.push(format!("plots/{name}"));
        }
    }
    Ok(plots)
}

fn box_plot(path: &Path, g: &GroupResult) -> Result<(), String> {
    let cases: Vec<_> = g
        .cases
        .iter()
        .filter(|c| c.status != Status::Skipped && !c.samples.is_empty())
        .collect();
    let all: Vec<f64> = cases.iter().flat_map(|c| c.values()).collect();
    let (lo, hi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (div, u) = unit(hi);
    let log = hi / lo.max(1.0) > 30.0;
    let h = 120 + 40 * cases.len() as u32;
    let root = SVGBackend::new(path, (W, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let labels: Vec<String> = cases.iter().map(|c| c.subject.clone()).collect();
    let y_range = -0.5f64..cases.len() as f64 - 0.5;
    let y_fmt = |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 0.01 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let caption = format!(
        "{} (median, quartiles, whiskers at Tukey fences, outliers)",
        g.id()
    );
    if log {
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(130)
            .build_cartesian_2d((lo / div * 0.8..hi / div * 1.25).log_scale(), y_range)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .y_labels(cases.len() * 2 + 1)
            .y_label_formatter(&y_fmt)
            .x_desc(format!("{u} (log scale)"))
            .draw()
            .map_err(|e| e.to_string())?;
        draw_boxes(&mut chart, &cases, div)?;
    } else {
        let pad = (hi - lo).max(hi * 0.05) / div * 0.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(130)
            .build_cartesian_2d((lo / div - pad).max(0.0)..hi / div + pad, y_range)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .y_labels(cases.len() * 2 + 1)
            .y_label_formatter(&y_fmt)
            .x_desc(u)
            .draw()
            .map_err(|e| e.to_string())?;
        draw_boxes(&mut chart, &cases, div)?;
    }
    root.present().map_err(|e| e.to_string())
}

type Chart<'a, X> =
    ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>;

fn draw_boxes<X: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, X>,
    cases: &[&super::json::CaseRecord],
    div: f64,
) -> Result<(), String> {
    for (i, c) in cases.iter().enumerate() {
        let v = c.values();
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        let (q1, med, q3) = (
            stats::percentile_sorted(&s, 25.0) / div,
            stats::percentile_sorted(&s, 50.0) / div,
            stats::percentile_sorted(&s, 75.0) / div,
        );
        let (flo, fhi) = stats::tukey_fences(&v);
        let inside: Vec<f64> = v
            .iter()
            .copied()
            .filter(|&x| x >= flo && x <= fhi)
            .collect();
        let wlo = inside.iter().copied().fold(f64::MAX, f64::min) / div;
        let whi = inside.iter().copied().fold(f64::MIN, f64::max) / div;
        let y = i as f64;
        let col = palette(i);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(wlo, y), (whi, y)],
                col.stroke_width(1),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(q1, y - 0.3), (q3, y + 0.3)],
                col.mix(0.3).filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(med, y - 0.3), (med, y + 0.3)],
                col.stroke_width(3),
            )))
            .map_err(|e| e.to_string())?;
        let outs: Vec<(f64, f64)> = v
            .iter()
            .filter(|&&x| x < flo || x > fhi)
            .map(|&x| (x / div, y))
            .collect();
        chart
            .draw_series(outs.into_iter().map(|p| Circle::new(p, 3, col.filled())))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn cdf(path: &Path, g: &GroupResult) -> Result<(), String> {
    let cases: Vec<_> = g.cases.iter().filter(|c| !c.samples.is_empty()).collect();
    let all: Vec<f64> = cases.iter().flat_map(|c| c.values()).collect();
    let (lo, hi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let root = SVGBackend::new(path, (W, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("startup of /bin/true: empirical CDF", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo / 1e6 * 0.8..hi / 1e6 * 1.25).log_scale(), 0.0f64..1.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("ms (log scale)")
        .y_desc("fraction of starts")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, c) in cases.iter().enumerate() {
        let mut v = c.values();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let pts: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .map(|(k, &x)| (x / 1e6, (k + 1) as f64 / n))
            .collect();
        let col = palette(i);
        chart
            .draw_series(LineSeries::new(pts, col.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(c.subject.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn phases(path: &Path, g: &GroupResult) -> Result<(), String> {
    let cases: Vec<_> = g.cases.iter().filter(|c| !c.parts.is_empty()).collect();
    let mut names: Vec<String> = Vec::new();
    for c in &cases {
        for k in c.parts.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    // Time order of strata's phases; unknown names after them.
    const ORDER: [&str; 12] = [
        "launch",
        "prepare",
        "cgroup",
        "namespaces",
        "serve",
        "network",
        "rootfs",
        "exec",
        "run",
        "teardown",
        "state",
        "exit",
    ];
    names.sort_by_key(|n| ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()));
    let max = cases
        .iter()
        .map(|c| {
            c.summary
                .as_ref()
                .map(|s| s.median)
                .unwrap_or(0.0)
                .max(c.parts.values().map(|s| s.median).sum())
        })
        .fold(0.0, f64::max)
        / 1e6;
    let h = 150 + 50 * cases.len() as u32;
    let root = SVGBackend::new(path, (W, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let labels: Vec<String> = cases.iter().map(|c| c.subject.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "strata startup: median of each phase, stacked (bar outline: median total)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(120)
        .build_cartesian_2d(0.0..max * 1.35, -0.5f64..cases.len() as f64 - 0.5)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .y_labels(cases.len() * 2 + 1)
        .y_label_formatter(&|y: &f64| {
            let i = y.round();
            if (y - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("ms")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, c) in cases.iter().enumerate() {
        let y = i as f64;
        let mut x = 0.0;
        for (k, name) in names.iter().enumerate() {
            let Some(s) = c.parts.get(name) else { continue };
            let w = s.median / 1e6;
            let col = palette(k);
            let series = chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, y - 0.3), (x + w, y + 0.3)],
                    col.filled(),
                )))
                .map_err(|e| e.to_string())?;
            if i == 0 {
                series.label(name.clone()).legend(move |(lx, ly)| {
                    Rectangle::new([(lx, ly - 5), (lx + 15, ly + 5)], col.filled())
                });
            }
            x += w;
        }
        if let Some(s) = &c.summary {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y - 0.35), (s.median / 1e6, y + 0.35)],
                    BLACK.stroke_width(1),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Parse "…n=<N>…" of a scaling group name.
pub fn scaling_n(name: &str) -> Option<u32> {
    name.split('/')
        .find_map(|p| p.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
}

fn scaling(path: &Path, title: &str, gs: &[&GroupResult]) -> Result<(), String> {
    let mut subjects: Vec<String> = Vec::new();
    for g in gs {
        for c in g.cases.iter().filter(|c| c.summary.is_some()) {
            if !subjects.contains(&c.subject) {
                subjects.push(c.subject.clone());
            }
        }
    }
    let points = |s: &str| -> Vec<(f64, f64)> {
        let mut p: Vec<(f64, f64)> = gs
            .iter()
            .filter_map(|g| {
                let n = scaling_n(&g.name)?;
                let m = g.case(s)?.summary.as_ref()?.median;
                Some((f64::from(n), m / 1e6))
            })
            .collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p
    };
    let all: Vec<(f64, f64)> = subjects.iter().flat_map(|s| points(s)).collect();
    let xmax = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let (ylo, yhi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let root = SVGBackend::new(path, (W, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("scaling, {title}"), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0.8..xmax * 1.25).log_scale(),
            (ylo * 0.8..yhi * 1.25).log_scale(),
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("concurrent starts N (log)")
        .y_desc("median of batch mean latency, ms (log)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in subjects.iter().enumerate() {
        let col = palette(i);
        let pts = points(s);
        chart
            .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, col.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
