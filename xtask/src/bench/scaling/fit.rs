//! A straight line through the scaling curve's points, and how far the
//! points are from it.

/// `y = intercept + slope × x`, fitted by least squares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Line {
    pub slope: f64,
    pub intercept: f64,
}

impl Line {
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// The least-squares line through `(x, y)` points; `None` with fewer than
/// two distinct `x`.
pub(super) fn least_squares(points: &[(f64, f64)]) -> Option<Line> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if points.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some(Line {
        slope,
        intercept: mean_y - slope * mean_x,
    })
}

/// The point farthest from `line` (by `|y − line(x)|`): its index and its
/// signed deviation.
pub(super) fn largest_deviation(points: &[(f64, f64)], line: &Line) -> Option<(usize, f64)> {
    points
        .iter()
        .map(|&(x, y)| y - line.at(x))
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
}

/// The slope between each point and the next (`(x, y)` in increasing
/// `x`): what each added unit of `x` cost there. A straight line has the
/// same one everywhere, whatever its intercept.
pub(super) fn marginal_slopes(points: &[(f64, f64)]) -> Vec<f64> {
    points
        .windows(2)
        .filter(|pair| pair[1].0 > pair[0].0)
        .map(|pair| (pair[1].1 - pair[0].1) / (pair[1].0 - pair[0].0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_line_exactly() {
        let points = [(1.0, 5.0), (2.0, 7.0), (4.0, 11.0)];
        let line = least_squares(&points).expect("a line");
        assert!((line.slope - 2.0).abs() < 1e-9);
        assert!((line.intercept - 3.0).abs() < 1e-9);
        let (_, deviation) = largest_deviation(&points, &line).expect("points");
        assert!(deviation.abs() < 1e-9);
    }

    /// A line with a large intercept has one slope between every pair of
    /// points; a curve that bends up does not.
    #[test]
    fn marginal_slopes_see_a_bend_not_an_intercept() {
        let affine: Vec<(f64, f64)> = [10.0, 30.0, 100.0, 200.0]
            .iter()
            .map(|&x| (x, 10.0 + 2.0 * x))
            .collect();
        for slope in marginal_slopes(&affine) {
            assert!((slope - 2.0).abs() < 1e-9, "{slope}");
        }
        let bent = [(10.0, 30.0), (30.0, 70.0), (100.0, 210.0), (200.0, 830.0)];
        assert_eq!(marginal_slopes(&bent), vec![2.0, 2.0, 6.2]);
    }

    #[test]
    fn finds_the_outlier() {
        let points = [(1.0, 1.0), (2.0, 2.0), (3.0, 6.0), (4.0, 4.0)];
        let line = least_squares(&points).expect("a line");
        assert_eq!(largest_deviation(&points, &line).map(|d| d.0), Some(2));
        assert_eq!(least_squares(&[(1.0, 1.0)]), None);
    }
}
