//! Anti-aliased rasterisation of a scene (4×4 samples a pixel).

use image::RgbImage;

use crate::{Object, Scene, Shape};

const SAMPLES: usize = 4;

/// True when the point (x, y), relative to the object's centre and in units of its radius,
/// lies inside the shape.
fn inside(shape: Shape, x: f32, y: f32) -> bool {
    match shape {
        Shape::Circle => x * x + y * y <= 1.0,
        // Side chosen so that a square looks about as big as a circle of the same radius.
        Shape::Square => x.abs() <= 0.82 && y.abs() <= 0.82,
        Shape::Triangle => {
            // Equilateral, pointing up, inscribed in the unit circle: apex (0,-1),
            // base corners (±√3/2, 1/2).
            const S3: f32 = 1.732_050_8;
            y <= 0.5 && S3 * x - y <= 1.0 && -S3 * x - y <= 1.0
        }
        Shape::Star => in_star(x, y),
    }
}

fn in_star(x: f32, y: f32) -> bool {
    // Five points, inner radius 0.45, one point straight up; even-odd rule on the outline.
    let mut verts = [(0.0f32, 0.0f32); 10];
    for (k, v) in verts.iter_mut().enumerate() {
        let r = if k % 2 == 0 { 1.0 } else { 0.45 };
        let a = -std::f32::consts::FRAC_PI_2 + k as f32 * std::f32::consts::PI / 5.0;
        *v = (r * a.cos(), r * a.sin());
    }
    let mut inside = false;
    for k in 0..10 {
        let (xi, yi) = verts[k];
        let (xj, yj) = verts[(k + 9) % 10];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

fn draw(img: &mut RgbImage, o: &Object) {
    let side = img.width().min(img.height()) as f32;
    let (cx, cy, r) = (
        o.x * img.width() as f32,
        o.y * img.height() as f32,
        o.radius * side,
    );
    let x0 = (cx - r).floor().max(0.0) as u32;
    let y0 = (cy - r).floor().max(0.0) as u32;
    let x1 = ((cx + r).ceil() as u32).min(img.width());
    let y1 = ((cy + r).ceil() as u32).min(img.height());
    let fill = o.colour.rgb();
    for py in y0..y1 {
        for px in x0..x1 {
            let mut hits = 0;
            for sy in 0..SAMPLES {
                for sx in 0..SAMPLES {
                    let x = px as f32 + (sx as f32 + 0.5) / SAMPLES as f32;
                    let y = py as f32 + (sy as f32 + 0.5) / SAMPLES as f32;
                    if inside(o.shape, (x - cx) / r, (y - cy) / r) {
                        hits += 1;
                    }
                }
            }
            if hits == 0 {
                continue;
            }
            let a = hits as f32 / (SAMPLES * SAMPLES) as f32;
            let p = img.get_pixel_mut(px, py);
            for (dst, src) in p.0.iter_mut().zip(fill) {
                *dst = (src as f32 * a + *dst as f32 * (1.0 - a)).round() as u8;
            }
        }
    }
}

/// Draws `scene` on a `width`×`height` image.
pub fn render(scene: &Scene, width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, image::Rgb(scene.background.rgb()));
    for o in &scene.objects {
        draw(&mut img, o);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Background, Colour, SceneKind, Size};

    #[test]
    fn shapes_cover_their_centre_and_areas_are_sensible() {
        for shape in Shape::ALL {
            let scene = Scene {
                kind: SceneKind::Single,
                background: Background::White,
                objects: vec![Object {
                    shape,
                    colour: Colour::Red,
                    size: Size::Large,
                    x: 0.5,
                    y: 0.5,
                    radius: 0.25,
                }],
            };
            let img = render(&scene, 100, 100);
            assert_eq!(img.get_pixel(50, 52).0, Colour::Red.rgb(), "{shape:?}");
            assert_eq!(img.get_pixel(2, 2).0, Background::White.rgb());
            let red = img.pixels().filter(|p| p.0 == Colour::Red.rgb()).count() as f32;
            let circle = std::f32::consts::PI * 25.0 * 25.0;
            assert!(
                red > 0.25 * circle && red < 1.05 * circle,
                "{shape:?}: {red}"
            );
        }
    }
}
