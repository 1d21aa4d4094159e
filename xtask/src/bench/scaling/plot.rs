//! `docs/scaling.svg`: a hand-written SVG of the scaling curve. Input
//! size runs along the x axis; link time (points and the fitted line) is
//! read on the left axis, peak memory less the process floor (squares)
//! and the memory budget (dashed) on the right one.

use std::fmt::Write as _;

use super::fit::Line;

/// One size's values, as plotted.
pub(super) struct Sample {
    pub input_mb: f64,
    pub time_ms: f64,
    pub memory_mib: f64,
    pub budget_mib: f64,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const TIME_COLOR: &str = "#1f77b4";
const MEMORY_COLOR: &str = "#d62728";

/// The plot area and the three axes' ranges.
struct Frame {
    x_max: f64,
    time_max: f64,
    memory_max: f64,
}

impl Frame {
    fn x(&self, mb: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * mb / self.x_max
    }

    fn y(&self, value: f64, max: f64) -> f64 {
        HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * value / max
    }
}

/// The SVG document; `line` is time (ms) against input bytes.
pub(super) fn svg(samples: &[Sample], line: &Line) -> String {
    let frame = Frame {
        x_max: nice_ceiling(samples.iter().map(|s| s.input_mb).fold(0.0, f64::max)),
        time_max: nice_ceiling(samples.iter().map(|s| s.time_ms).fold(0.0, f64::max)),
        memory_max: nice_ceiling(
            samples
                .iter()
                .map(|s| s.memory_mib.max(s.budget_mib))
                .fold(0.0, f64::max),
        ),
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">solder run --noexec: \
         link time and peak memory against input size</text>\n",
        WIDTH / 2.0
    );
    axes(&mut out, &frame);
    time_series(&mut out, &frame, samples, line);
    memory_series(&mut out, &frame, samples);
    legend(&mut out);
    out += "</svg>\n";
    out
}

/// The frame, ticks and axis titles.
fn axes(out: &mut String, f: &Frame) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (HEIGHT - BOTTOM, TOP);
    let _ = writeln!(
        out,
        "<rect x=\"{x0}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>",
        x1 - x0,
        y0 - y1
    );
    for tick in ticks(f.x_max) {
        let x = f.x(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{y0}\" x2=\"{x:.1}\" y2=\"{y1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            y0 + 16.0,
            label(tick)
        );
    }
    for tick in ticks(f.time_max) {
        let y = f.y(tick, f.time_max);
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{TIME_COLOR}\">{}</text>",
            x0 - 6.0,
            y + 4.0,
            label(tick)
        );
    }
    for tick in ticks(f.memory_max) {
        let y = f.y(tick, f.memory_max);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" fill=\"{MEMORY_COLOR}\">{}</text>",
            x1 + 6.0,
            y + 4.0,
            label(tick)
        );
    }
    let middle = (y0 + y1) / 2.0;
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">input (MB of objects)</text>\n\
         <text transform=\"translate(22 {middle}) rotate(-90)\" text-anchor=\"middle\" \
         fill=\"{TIME_COLOR}\">link time (ms)</text>\n\
         <text transform=\"translate({} {middle}) rotate(90)\" text-anchor=\"middle\" \
         fill=\"{MEMORY_COLOR}\">peak memory above the floor (MiB)</text>",
        (x0 + x1) / 2.0,
        HEIGHT - 18.0,
        WIDTH - 22.0
    );
}

/// Time points and the fitted line (clipped to the plot's range).
fn time_series(out: &mut String, f: &Frame, samples: &[Sample], line: &Line) {
    let at = |mb: f64| line.at(mb * 1e6).clamp(0.0, f.time_max);
    let _ = writeln!(
        out,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{TIME_COLOR}\"/>",
        f.x(0.0),
        f.y(at(0.0), f.time_max),
        f.x(f.x_max),
        f.y(at(f.x_max), f.time_max)
    );
    for s in samples {
        let _ = writeln!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{TIME_COLOR}\"/>",
            f.x(s.input_mb),
            f.y(s.time_ms, f.time_max)
        );
    }
}

/// Memory points, and the budget dashed (points alone: a line through
/// them could be taken for the time's fitted line).
fn memory_series(out: &mut String, f: &Frame, samples: &[Sample]) {
    let budget = samples
        .iter()
        .map(|s| {
            format!(
                "{:.1},{:.1}",
                f.x(s.input_mb),
                f.y(s.budget_mib, f.memory_max)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(
        out,
        "<polyline points=\"{budget}\" fill=\"none\" stroke=\"{MEMORY_COLOR}\" \
         stroke-dasharray=\"6 4\"/>"
    );
    for s in samples {
        let _ = writeln!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"7\" height=\"7\" fill=\"{MEMORY_COLOR}\"/>",
            f.x(s.input_mb) - 3.5,
            f.y(s.memory_mib, f.memory_max) - 3.5
        );
    }
}

fn legend(out: &mut String) {
    let (x, y) = (LEFT + 12.0, TOP + 16.0);
    let _ = writeln!(
        out,
        "<circle cx=\"{x}\" cy=\"{y}\" r=\"4\" fill=\"{TIME_COLOR}\"/>\
         <text x=\"{}\" y=\"{}\">link time (median)</text>\n\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{TIME_COLOR}\"/>\
         <text x=\"{}\" y=\"{}\">least-squares line</text>\n\
         <rect x=\"{}\" y=\"{}\" width=\"7\" height=\"7\" fill=\"{MEMORY_COLOR}\"/>\
         <text x=\"{}\" y=\"{}\">peak memory − floor</text>\n\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{MEMORY_COLOR}\" \
         stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{}\">budget: image + ¼ input</text>",
        x + 10.0,
        y + 4.0,
        x - 6.0,
        y + 18.0,
        x + 6.0,
        y + 18.0,
        x + 10.0,
        y + 22.0,
        x - 3.5,
        y + 32.5,
        x + 10.0,
        y + 40.0,
        x - 6.0,
        y + 54.0,
        x + 6.0,
        y + 54.0,
        x + 10.0,
        y + 58.0
    );
}

/// The step between ticks for a range `0..max`: 1, 2 or 5 × 10ⁿ, for
/// about five ticks.
fn step(max: f64) -> f64 {
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let unit = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| m * magnitude >= raw)
        .unwrap_or(10.0);
    unit * magnitude
}

/// The smallest multiple of the tick step at or above `value` (1 for 0).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let step = step(value);
    (value / step).ceil() * step
}

fn ticks(max: f64) -> Vec<f64> {
    let step = step(max);
    (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|t| *t <= max * (1.0 + 1e-9))
        .collect()
}

fn label(value: f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ceiling(187.0), 200.0);
        assert_eq!(ticks(200.0), vec![0.0, 50.0, 100.0, 150.0, 200.0]);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn the_document_is_closed() {
        let samples = [Sample {
            input_mb: 1.0,
            time_ms: 10.0,
            memory_mib: 5.0,
            budget_mib: 6.0,
        }];
        let line = Line {
            slope: 1e-5,
            intercept: 0.0,
        };
        let svg = svg(&samples, &line);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}
