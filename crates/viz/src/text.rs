use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// How text is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextStyle {
    /// Font size in pixels (the em height).
    pub px: f32,
    /// Text colour.
    pub colour: [u8; 3],
}

impl Default for TextStyle {
    fn default() -> Self {
        Self {
            px: 14.0,
            colour: [30, 30, 30],
        }
    }
}

/// Text layout and rasterisation with the embedded font.
pub struct Text {
    font: FontRef<'static>,
}

impl Default for Text {
    fn default() -> Self {
        Self::new()
    }
}

impl Text {
    /// The embedded font.
    pub fn new() -> Self {
        let font = FontRef::try_from_slice(epaint_default_fonts::UBUNTU_LIGHT)
            .expect("the embedded font is a valid TrueType file");
        Self { font }
    }

    /// Height of one line of text at `px`, spacing included.
    pub fn line_height(&self, px: f32) -> f32 {
        let s = self.font.as_scaled(PxScale::from(px));
        (s.ascent() - s.descent() + s.line_gap()).ceil()
    }

    /// Advance width of `text` at `px`.
    pub fn width(&self, text: &str, px: f32) -> f32 {
        let s = self.font.as_scaled(PxScale::from(px));
        let mut w = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = s.glyph_id(c);
            if let Some(p) = prev {
                w += s.kern(p, id);
            }
            w += s.h_advance(id);
            prev = Some(id);
        }
        w
    }

    /// Breaks `text` into lines no wider than `max_width` at `px`, at spaces where possible
    /// and inside a word only when the word alone is too wide.
    pub fn wrap(&self, text: &str, px: f32, max_width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if self.width(&candidate, px) <= max_width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // A word too wide for a line of its own is cut.
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if self.width(&piece, px) > max_width && piece.chars().count() > 1 {
                    piece.pop();
                    lines.push(std::mem::take(&mut piece));
                    piece.push(c);
                }
            }
            line = piece;
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }

    /// Draws one line of `text` with its top-left corner at (`x`, `y`), blending by glyph
    /// coverage; whatever falls outside the image is clipped.
    pub fn draw(&self, img: &mut RgbImage, x: f32, y: f32, text: &str, style: TextStyle) {
        let scale = PxScale::from(style.px);
        let s = self.font.as_scaled(scale);
        let baseline = y + s.ascent();
        let mut caret = x;
        let mut prev = None;
        for c in text.chars() {
            let id = s.glyph_id(c);
            if let Some(p) = prev {
                caret += s.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(caret, baseline));
            caret += s.h_advance(id);
            prev = Some(id);
            let Some(outline) = self.font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let px = bounds.min.x as i64 + gx as i64;
                let py = bounds.min.y as i64 + gy as i64;
                if px < 0 || py < 0 || px >= img.width() as i64 || py >= img.height() as i64 {
                    return;
                }
                let a = coverage.clamp(0.0, 1.0);
                let Rgb(p) = img.get_pixel_mut(px as u32, py as u32);
                for (dst, src) in p.iter_mut().zip(style.colour) {
                    *dst = (src as f32 * a + *dst as f32 * (1.0 - a)).round() as u8;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_visible_ink_inside_its_box() {
        let t = Text::new();
        let mut img = RgbImage::from_pixel(200, 40, Rgb([255, 255, 255]));
        t.draw(&mut img, 5.0, 5.0, "Hello, captions", TextStyle::default());
        let width = t.width("Hello, captions", 14.0);
        let inked: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] < 128)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(inked.len() > 100, "text leaves ink");
        assert!(inked.iter().all(|&(x, y)| x >= 5
            && (x as f32) <= 6.0 + width
            && y >= 5
            && (y as f32) <= 5.0 + t.line_height(14.0)));
    }

    #[test]
    fn wrap_respects_width_and_keeps_words() {
        let t = Text::new();
        let text = "a red circle above a small blue square on a white background";
        let lines = t.wrap(text, 14.0, 120.0);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| t.width(l, 14.0) <= 120.0));
        assert_eq!(lines.join(" "), text);
        let long = t.wrap("supercalifragilisticexpialidocious", 14.0, 40.0);
        assert!(long.len() > 1 && long.concat() == "supercalifragilisticexpialidocious");
    }
}
