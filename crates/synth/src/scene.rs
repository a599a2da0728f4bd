use rand::Rng;
use serde::{Deserialize, Serialize};

/// A shape that can be drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A disc.
    Circle,
    /// An axis-aligned square.
    Square,
    /// An equilateral triangle pointing up.
    Triangle,
    /// A five-pointed star.
    Star,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 4] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Star];

    /// Singular noun.
    pub fn noun(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
        }
    }

    /// Plural noun.
    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Star => "stars",
        }
    }
}

/// A fill colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Yellow.
    Yellow,
    /// Purple.
    Purple,
    /// Orange.
    Orange,
}

impl Colour {
    /// Every colour.
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
    ];

    /// The word.
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
        }
    }

    /// sRGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 35],
            Colour::Green => [30, 160, 60],
            Colour::Blue => [35, 70, 210],
            Colour::Yellow => [240, 210, 30],
            Colour::Purple => [135, 50, 170],
            Colour::Orange => [245, 130, 25],
        }
    }
}

/// The background colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// White.
    White,
    /// Black.
    Black,
    /// Grey.
    Grey,
}

impl Background {
    /// Every background.
    pub const ALL: [Background; 3] = [Background::White, Background::Black, Background::Grey];

    /// The word.
    pub fn word(self) -> &'static str {
        match self {
            Background::White => "white",
            Background::Black => "black",
            Background::Grey => "grey",
        }
    }

    /// sRGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Background::White => [250, 250, 250],
            Background::Black => [15, 15, 15],
            Background::Grey => [128, 128, 128],
        }
    }
}

/// Object size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// About a tenth of the image across.
    Small,
    /// About a third of the image across.
    Large,
}

impl Size {
    /// The adjective.
    pub fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

/// Where the first object of a pair is relative to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// First is above the second.
    Above,
    /// First is below the second.
    Below,
    /// First is to the left of the second.
    LeftOf,
    /// First is to the right of the second.
    RightOf,
}

impl Relation {
    /// Every relation.
    pub const ALL: [Relation; 4] = [
        Relation::Above,
        Relation::Below,
        Relation::LeftOf,
        Relation::RightOf,
    ];

    /// The phrase ("above", "to the left of").
    pub fn phrase(self) -> &'static str {
        match self {
            Relation::Above => "above",
            Relation::Below => "below",
            Relation::LeftOf => "to the left of",
            Relation::RightOf => "to the right of",
        }
    }

    /// The relation seen from the other object.
    pub fn inverse(self) -> Relation {
        match self {
            Relation::Above => Relation::Below,
            Relation::Below => Relation::Above,
            Relation::LeftOf => Relation::RightOf,
            Relation::RightOf => Relation::LeftOf,
        }
    }
}

/// One drawn shape; coordinates are fractions of the image side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// What is drawn.
    pub shape: Shape,
    /// Its fill.
    pub colour: Colour,
    /// Its size class.
    pub size: Size,
    /// Centre, x in [0, 1] from the left.
    pub x: f32,
    /// Centre, y in [0, 1] from the top.
    pub y: f32,
    /// Circumradius as a fraction of the image side.
    pub radius: f32,
}

/// What a scene shows, which decides how it is described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SceneKind {
    /// One object.
    Single,
    /// Two different objects; the first stands in `relation` to the second.
    Pair {
        /// Where the first object is.
        relation: Relation,
    },
    /// Two to four objects of the same shape and colour.
    Group,
}

/// A scene: the background and the objects on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// How the scene is composed.
    #[serde(flatten)]
    pub kind: SceneKind,
    /// Background colour.
    pub background: Background,
    /// The objects, in drawing order.
    pub objects: Vec<Object>,
}

fn pick<T: Copy>(rng: &mut impl Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn radius(rng: &mut impl Rng, size: Size) -> f32 {
    match size {
        Size::Small => rng.random_range(0.075..0.10),
        Size::Large => rng.random_range(0.17..0.22),
    }
}

/// True when two objects' circumcircles keep a clear gap.
fn apart(a: &Object, b: &Object) -> bool {
    let (dx, dy) = (a.x - b.x, a.y - b.y);
    (dx * dx + dy * dy).sqrt() > a.radius + b.radius + 0.03
}

fn place(rng: &mut impl Rng, r: f32) -> (f32, f32) {
    let m = r + 0.02;
    (rng.random_range(m..1.0 - m), rng.random_range(m..1.0 - m))
}

impl Scene {
    /// Draws a random scene.
    pub fn random(rng: &mut impl Rng) -> Scene {
        let background = pick(rng, &Background::ALL);
        let roll: f32 = rng.random();
        if roll < 0.34 {
            Self::single(rng, background)
        } else if roll < 0.67 {
            Self::pair(rng, background)
        } else {
            Self::group(rng, background)
        }
    }

    fn single(rng: &mut impl Rng, background: Background) -> Scene {
        let size = if rng.random_bool(0.5) {
            Size::Small
        } else {
            Size::Large
        };
        let r = radius(rng, size);
        let (x, y) = place(rng, r);
        Scene {
            kind: SceneKind::Single,
            background,
            objects: vec![Object {
                shape: pick(rng, &Shape::ALL),
                colour: pick(rng, &Colour::ALL),
                size,
                x,
                y,
                radius: r,
            }],
        }
    }

    fn pair(rng: &mut impl Rng, background: Background) -> Scene {
        let relation = pick(rng, &Relation::ALL);
        let sa = if rng.random_bool(0.5) {
            Size::Small
        } else {
            Size::Large
        };
        let ra = radius(rng, sa);
        let sb = if rng.random_bool(0.5) {
            Size::Small
        } else {
            Size::Large
        };
        let rb = radius(rng, sb);
        // Different shapes or colours, so that the two can be told apart in words.
        let (shape_a, colour_a) = (pick(rng, &Shape::ALL), pick(rng, &Colour::ALL));
        let (shape_b, colour_b) = loop {
            let c = (pick(rng, &Shape::ALL), pick(rng, &Colour::ALL));
            if c != (shape_a, colour_a) {
                break c;
            }
        };
        // Along the relation's axis the objects are well separated; across it they share a
        // line (give or take a little), so that "above" is never also "to the left of".
        let a_first = matches!(relation, Relation::Above | Relation::LeftOf);
        let (r_low, r_high) = if a_first { (ra, rb) } else { (rb, ra) };
        const MARGIN: f32 = 0.02;
        const GAP: f32 = 0.06;
        let low_max = 1.0 - MARGIN - 2.0 * r_high - r_low - GAP;
        let low = rng.random_range(r_low + MARGIN..low_max.max(r_low + MARGIN + 1e-4));
        let high_min = low + r_low + r_high + GAP;
        let high = rng.random_range(high_min..(1.0 - r_high - MARGIN).max(high_min + 1e-4));
        let (a_along, b_along) = if a_first { (low, high) } else { (high, low) };
        let rmax = ra.max(rb);
        let across = rng.random_range(rmax + MARGIN..1.0 - rmax - MARGIN);
        let jitter = rng.random_range(-0.04..0.04);
        let (ax, ay, bx, by) = match relation {
            Relation::Above | Relation::Below => (across, a_along, across + jitter, b_along),
            Relation::LeftOf | Relation::RightOf => (a_along, across, b_along, across + jitter),
        };
        let clamp = |v: f32, r: f32| v.clamp(r + 0.01, 1.0 - r - 0.01);
        Scene {
            kind: SceneKind::Pair { relation },
            background,
            objects: vec![
                Object {
                    shape: shape_a,
                    colour: colour_a,
                    size: sa,
                    x: clamp(ax, ra),
                    y: clamp(ay, ra),
                    radius: ra,
                },
                Object {
                    shape: shape_b,
                    colour: colour_b,
                    size: sb,
                    x: clamp(bx, rb),
                    y: clamp(by, rb),
                    radius: rb,
                },
            ],
        }
    }

    fn group(rng: &mut impl Rng, background: Background) -> Scene {
        let n = rng.random_range(2..=4usize);
        let shape = pick(rng, &Shape::ALL);
        let colour = pick(rng, &Colour::ALL);
        let mut objects: Vec<Object> = Vec::with_capacity(n);
        while objects.len() < n {
            let r = radius(rng, Size::Small);
            let (x, y) = place(rng, r);
            let o = Object {
                shape,
                colour,
                size: Size::Small,
                x,
                y,
                radius: r,
            };
            if objects.iter().all(|p| apart(p, &o)) {
                objects.push(o);
            }
        }
        Scene {
            kind: SceneKind::Group,
            background,
            objects,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pairs_hold_their_relation_and_do_not_overlap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..2000 {
            let s = Scene::random(&mut rng);
            for o in &s.objects {
                assert!(o.x - o.radius >= 0.0 && o.x + o.radius <= 1.0, "{s:?}");
                assert!(o.y - o.radius >= 0.0 && o.y + o.radius <= 1.0, "{s:?}");
            }
            for (i, a) in s.objects.iter().enumerate() {
                for b in &s.objects[i + 1..] {
                    assert!(apart(a, b), "overlap in {s:?}");
                }
            }
            if let SceneKind::Pair { relation } = s.kind {
                let (a, b) = (&s.objects[0], &s.objects[1]);
                let ok = match relation {
                    Relation::Above => a.y < b.y && (a.x - b.x).abs() < (a.y - b.y).abs(),
                    Relation::Below => a.y > b.y && (a.x - b.x).abs() < (a.y - b.y).abs(),
                    Relation::LeftOf => a.x < b.x && (a.y - b.y).abs() < (a.x - b.x).abs(),
                    Relation::RightOf => a.x > b.x && (a.y - b.y).abs() < (a.x - b.x).abs(),
                };
                assert!(ok, "{s:?}");
            }
        }
    }
}
