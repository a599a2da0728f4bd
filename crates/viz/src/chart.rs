//! Line charts (the training plot) with plotters, using the embedded font.

use std::sync::Once;

use image::RgbImage;
use plotters::prelude::*;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points, in x order.
    pub points: Vec<(f32, f32)>,
}

/// One chart of several lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is valid; a failure here would only lose the labels.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

fn bounds(panel: &Panel) -> ((f32, f32), (f32, f32)) {
    let pts = panel.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for &(x, y) in pts.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    ((x0, x1), (y0 - pad, y1 + pad))
}

/// Draws the panels side by side on one `width`×`height` image.
pub fn line_charts(panels: &[Panel], width: u32, height: u32) -> RgbImage {
    register_font();
    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(areas) {
            let ((x0, x1), (y0, y1)) = bounds(panel);
            let mut chart = match ChartBuilder::on(&area)
                .caption(&panel.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(x0..x1, y0..y1)
            {
                Ok(c) => c,
                Err(_) => continue,
            };
            // Whole-number x values (epochs) get whole-number ticks.
            let whole = panel
                .series
                .iter()
                .flat_map(|s| &s.points)
                .all(|p| p.0.fract() == 0.0);
            let ticks = if whole {
                ((x1 - x0) as usize + 1).clamp(2, 12)
            } else {
                10
            };
            let _ = chart
                .configure_mesh()
                .x_labels(ticks)
                .x_label_formatter(&|x| {
                    if whole {
                        format!("{x:.0}")
                    } else {
                        format!("{x:.2}")
                    }
                })
                .x_desc(&panel.x_label)
                .label_style(("sans-serif", 13))
                .light_line_style(RGBColor(235, 235, 235))
                .draw();
            for (k, s) in panel.series.iter().enumerate() {
                let colour = COLOURS[k % COLOURS.len()];
                let style = ShapeStyle::from(&colour).stroke_width(2);
                if let Ok(a) = chart.draw_series(LineSeries::new(s.points.iter().copied(), style)) {
                    a.label(&s.name).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                }
                let _ =
                    chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())));
            }
            let _ = chart
                .configure_series_labels()
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw();
        }
        let _ = root.present();
    }
    RgbImage::from_raw(width, height, buf).expect("buffer has width·height·3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_in_their_colours() {
        let panel = Panel {
            title: "loss".into(),
            x_label: "epoch".into(),
            series: vec![
                Series {
                    name: "train".into(),
                    points: vec![(1.0, 3.0), (2.0, 2.0), (3.0, 1.5)],
                },
                Series {
                    name: "validation".into(),
                    points: vec![(1.0, 3.2), (2.0, 2.5), (3.0, 2.4)],
                },
            ],
        };
        let img = line_charts(&[panel.clone(), panel], 800, 300);
        let blue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
        let orange = img.pixels().filter(|p| p.0 == [255, 127, 14]).count();
        assert!(blue > 100 && orange > 100, "{blue} {orange}");
        // One point: the chart still draws.
        let single = Panel {
            title: "t".into(),
            x_label: "x".into(),
            series: vec![Series {
                name: "a".into(),
                points: vec![(1.0, 1.0)],
            }],
        };
        assert_eq!(line_charts(&[single], 300, 200).width(), 300);
    }
}
