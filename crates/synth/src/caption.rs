//! Five differently worded, true captions for a scene.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::{Scene, SceneKind};

fn number_word(n: usize) -> &'static str {
    match n {
        2 => "two",
        3 => "three",
        4 => "four",
        _ => "several",
    }
}

/// Capitalises, fixes "a" before a vowel to "an", and ends with " ." as Flickr8k does.
fn sentence(s: String) -> String {
    let words: Vec<&str> = s.split(' ').collect();
    let s = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let vowel_next = words
                .get(i + 1)
                .and_then(|n| n.chars().next())
                .is_some_and(|c| "aeiou".contains(c));
            if *w == "a" && vowel_next {
                "an"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + " .",
        None => s,
    }
}

/// Five distinct captions describing `scene`, worded differently, in an order drawn from
/// `rng`. Every caption is true of the picture.
pub fn captions(scene: &Scene, rng: &mut impl Rng) -> Vec<String> {
    let bg = scene.background.word();
    let mut pool: Vec<String> = match scene.kind {
        SceneKind::Single => {
            let o = &scene.objects[0];
            let (c, s, z) = (o.colour.word(), o.shape.noun(), o.size.word());
            vec![
                format!("a {z} {c} {s} on a {bg} background"),
                format!("a {c} {s}"),
                format!("there is a {z} {c} {s} in the picture"),
                format!("a single {c} {s} on {bg}"),
                format!("one {z} {s} that is {c}"),
                format!("a {c} {s} alone on a {bg} background"),
            ]
        }
        SceneKind::Pair { relation } => {
            let (a, b) = (&scene.objects[0], &scene.objects[1]);
            let da = format!("{} {}", a.colour.word(), a.shape.noun());
            let db = format!("{} {}", b.colour.word(), b.shape.noun());
            let (za, zb) = (a.size.word(), b.size.word());
            let rel = relation.phrase();
            let inv = relation.inverse().phrase();
            vec![
                format!("a {za} {da} {rel} a {zb} {db}"),
                format!("a {db} {inv} a {da}"),
                format!("a {da} and a {db} on a {bg} background"),
                format!("two shapes a {da} and a {db}"),
                format!("a {da} is {rel} a {db}"),
                format!("a {zb} {db} with a {da} {rel} it"),
            ]
        }
        SceneKind::Group => {
            let o = &scene.objects[0];
            let n = number_word(scene.objects.len());
            let (c, s, sp) = (o.colour.word(), o.shape.noun(), o.shape.plural());
            vec![
                format!("{n} {c} {sp} on a {bg} background"),
                format!("{n} {c} {sp}"),
                format!("a group of {n} {c} {sp}"),
                format!("there are {n} {sp} and they are all {c}"),
                format!("{n} small {c} {sp} scattered across the image"),
                format!("several {c} {s} shapes on {bg}"),
            ]
        }
    };
    pool.shuffle(rng);
    pool.truncate(5);
    pool.into_iter().map(sentence).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn five_distinct_captions_naming_what_is_drawn() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..300 {
            let scene = Scene::random(&mut rng);
            let caps = captions(&scene, &mut rng);
            assert_eq!(caps.len(), 5);
            let mut uniq = caps.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), 5, "{caps:?}");
            for c in &caps {
                assert!(c.ends_with(" ."), "{c}");
                assert!(!c.to_lowercase().contains("a orange"), "{c}");
                let lower = c.to_lowercase();
                let o = &scene.objects[0];
                assert!(lower.contains(o.colour.word()), "{c} for {scene:?}");
                assert!(lower.contains(o.shape.noun()), "{c} for {scene:?}");
            }
        }
    }
}
