use image::imageops::FilterType;
use image::{DynamicImage, Rgb, RgbImage};

use crate::{Text, TextStyle};

/// One cell of a contact sheet.
#[derive(Debug, Clone)]
pub struct SheetItem {
    /// The picture, scaled down to fit the cell.
    pub image: DynamicImage,
    /// A heading drawn under the picture (usually the file name).
    pub title: String,
    /// Captions drawn under the heading, wrapped to the cell's width.
    pub captions: Vec<String>,
}

/// Layout of a contact sheet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SheetOptions {
    /// Cells per row.
    pub columns: usize,
    /// Width of a cell's picture area; pictures keep their aspect ratio inside a square of
    /// this side.
    pub thumb: u32,
    /// Caption font size in pixels.
    pub font_px: f32,
    /// Space between and around cells.
    pub padding: u32,
}

impl Default for SheetOptions {
    fn default() -> Self {
        Self {
            columns: 4,
            thumb: 256,
            font_px: 13.0,
            padding: 12,
        }
    }
}

const TITLE: [u8; 3] = [110, 110, 110];
const CAPTION: [u8; 3] = [25, 25, 25];
const PAPER: [u8; 3] = [255, 255, 255];
const FRAME: [u8; 3] = [225, 225, 225];

/// Largest sheet drawn, in pixels (300 MB of RGB).
pub const MAX_SHEET_PIXELS: u64 = 100_000_000;
/// Lines of one caption drawn; a longer caption ends in "…".
pub const MAX_CAPTION_LINES: usize = 4;
/// Captions drawn under one picture.
pub const MAX_CAPTIONS: usize = 8;
/// Lines of a cell's title.
const MAX_TITLE_LINES: usize = 2;

/// Keeps the first `max` of `lines`, marking a cut with "…".
fn clip(mut lines: Vec<String>, max: usize) -> Vec<String> {
    if lines.len() > max {
        lines.truncate(max);
        if let Some(last) = lines.last_mut() {
            last.push('…');
        }
    }
    lines
}

/// Lays out pictures in a grid with their captions rendered under each (at most
/// [`MAX_CAPTIONS`] a picture, [`MAX_CAPTION_LINES`] lines each). Fails, before drawing,
/// when the sheet would be larger than [`MAX_SHEET_PIXELS`].
pub fn contact_sheet(items: &[SheetItem], opts: SheetOptions) -> Result<RgbImage, String> {
    let text = Text::new();
    let columns = opts.columns.clamp(1, items.len().max(1));
    let (thumb, pad) = (opts.thumb.max(16), opts.padding);
    let line = text.line_height(opts.font_px);
    let gap = (line / 3.0).ceil();

    // Lay out every cell's text first: rows take the height of their tallest cell.
    let laid: Vec<(Vec<String>, Vec<Vec<String>>)> = items
        .iter()
        .map(|it| {
            // Only the start of a very long text is laid out: it is cut anyway.
            let start = |s: &str| s.chars().take(2000).collect::<String>();
            let title = clip(
                text.wrap(&start(&it.title), opts.font_px, thumb as f32),
                MAX_TITLE_LINES,
            );
            let caps = it
                .captions
                .iter()
                .take(MAX_CAPTIONS)
                .map(|c| {
                    let wrapped = text.wrap(&format!("• {}", start(c)), opts.font_px, thumb as f32);
                    clip(wrapped, MAX_CAPTION_LINES)
                })
                .collect();
            (title, caps)
        })
        .collect();
    let text_height = |(title, caps): &(Vec<String>, Vec<Vec<String>>)| -> u32 {
        let lines = title.len() + caps.iter().map(Vec::len).sum::<usize>();
        (lines as f32 * line + gap * (caps.len() as f32 + 1.0)).ceil() as u32
    };
    let row_heights: Vec<u32> = laid
        .chunks(columns)
        .map(|row| thumb + row.iter().map(text_height).max().unwrap_or(0))
        .collect();
    let width = columns as u64 * (thumb + pad) as u64 + pad as u64;
    let height = row_heights.iter().map(|&h| (h + pad) as u64).sum::<u64>() + pad as u64;
    if width * height > MAX_SHEET_PIXELS {
        return Err(format!(
            "the sheet would be {width}×{height} pixels, more than the limit of \
             {MAX_SHEET_PIXELS}; draw fewer images, fewer columns or smaller pictures"
        ));
    }
    let (width, height) = (width as u32, height as u32);
    let mut img = RgbImage::from_pixel(width, height, Rgb(PAPER));

    let title_style = TextStyle {
        px: opts.font_px,
        colour: TITLE,
    };
    let caption_style = TextStyle {
        px: opts.font_px,
        colour: CAPTION,
    };
    let mut y0 = pad;
    for (r, row_h) in row_heights.iter().enumerate() {
        for c in 0..columns {
            let k = r * columns + c;
            let Some(item) = items.get(k) else { break };
            let x0 = pad + c as u32 * (thumb + pad);
            // Frame, then the picture centred in it.
            for y in y0..y0 + thumb {
                for x in x0..x0 + thumb {
                    img.put_pixel(x, y, Rgb(FRAME));
                }
            }
            let small = item
                .image
                .resize(thumb, thumb, FilterType::Triangle)
                .to_rgb8();
            let (ox, oy) = (
                x0 + (thumb - small.width()) / 2,
                y0 + (thumb - small.height()) / 2,
            );
            image::imageops::replace(&mut img, &small, ox as i64, oy as i64);

            let (title, caps) = &laid[k];
            let mut y = (y0 + thumb) as f32 + gap;
            for l in title {
                text.draw(&mut img, x0 as f32, y, l, title_style);
                y += line;
            }
            for cap in caps {
                y += gap;
                for l in cap {
                    text.draw(&mut img, x0 as f32, y, l, caption_style);
                    y += line;
                }
            }
        }
        y0 += row_h + pad;
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(w: u32, h: u32) -> SheetItem {
        SheetItem {
            image: DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb([200, 0, 0]))),
            title: "x.jpg".into(),
            captions: vec!["a red square".into(), "a very red square indeed".into()],
        }
    }

    #[test]
    fn grid_size_follows_items_and_columns() {
        let opts = SheetOptions {
            columns: 3,
            thumb: 64,
            font_px: 10.0,
            padding: 4,
        };
        let sheet = contact_sheet(
            &[item(100, 50), item(50, 100), item(64, 64), item(10, 10)],
            opts,
        )
        .unwrap();
        assert_eq!(sheet.width(), 3 * (64 + 4) + 4);
        // Two rows, each taller than a picture alone.
        assert!(sheet.height() > 2 * (64 + 4) + 4);
        // The first picture is letterboxed: red in the middle of its frame, frame above it.
        assert_eq!(sheet.get_pixel(4 + 32, 4 + 32).0, [200, 0, 0]);
        assert_eq!(sheet.get_pixel(4 + 32, 4 + 2).0, FRAME);
    }

    #[test]
    fn long_captions_are_cut_and_huge_sheets_refused() {
        let opts = SheetOptions {
            columns: 1,
            thumb: 64,
            font_px: 10.0,
            padding: 4,
        };
        let mut long = item(10, 10);
        long.captions = vec!["word ".repeat(100_000); 50];
        let sheet = contact_sheet(&[long.clone()], opts).unwrap();
        assert!(sheet.height() < 64 + 60 * 14, "{}", sheet.height());
        let many = vec![item(10, 10); 30_000];
        let e = contact_sheet(&many, opts).unwrap_err();
        assert!(e.contains("more than the limit"), "{e}");
    }
}
