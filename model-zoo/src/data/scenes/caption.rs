//! A scene's caption from its objects, in one of a few phrasings, and the reverse: what a
//! caption says (which objects, how arranged), so predicted captions can be checked fact
//! by fact.

use super::layout::{Alignment, Arrangement};
use super::{Background, COLOURS, SceneObject};
use crate::captioning::vocabulary::words;

/// How many phrasings each layout has; [`caption`] picks one with `template`.
pub const TEMPLATES: usize = 3;

/// Singular and plural nouns for Fashion-MNIST's classes, in label order.
const NOUNS: [(&str, &str); 10] = [
    ("t-shirt", "t-shirts"),
    ("pair of trousers", "pairs of trousers"),
    ("pullover", "pullovers"),
    ("dress", "dresses"),
    ("coat", "coats"),
    ("sandal", "sandals"),
    ("shirt", "shirts"),
    ("sneaker", "sneakers"),
    ("bag", "bags"),
    ("ankle boot", "ankle boots"),
];

const COUNT_WORDS: [&str; 5] = ["no", "a", "two", "three", "four"];

/// "a red sneaker", "two blue bags", "a pair of white trousers".
fn noun_phrase(count: usize, colour: usize, label: usize) -> String {
    let (singular, plural) = NOUNS[label];
    let colour = COLOURS[colour].0;
    match (count, singular.strip_prefix("pair of ")) {
        (1, Some(rest)) => format!("a pair of {colour} {rest}"),
        (1, None) => format!("{} {colour} {singular}", article(colour)),
        (n, Some(rest)) => format!("{} pairs of {colour} {rest}", COUNT_WORDS[n]),
        (n, None) => format!("{} {colour} {plural}", COUNT_WORDS[n]),
    }
}

fn article(next: &str) -> &'static str {
    if next.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// "to the left of", "above", "below and to the right of".
fn relation_phrase(arrangement: Arrangement) -> String {
    let vertical = match arrangement.vertical {
        -1 => Some("above"),
        1 => Some("below"),
        _ => None,
    };
    let horizontal = match arrangement.horizontal {
        -1 => Some("to the left of"),
        1 => Some("to the right of"),
        _ => None,
    };
    match (vertical, horizontal) {
        (Some(v), Some(h)) => format!("{v} and {h}"),
        (Some(one), None) | (None, Some(one)) => one.to_string(),
        (None, None) => "beside".to_string(),
    }
}

/// The caption of `objects` on `background`, in one of [`TEMPLATES`] phrasings. A pair is
/// related by where its ink lies: the left one of a row, otherwise the upper one, first.
/// Three or four objects are listed by class, then colour, identical ones counted together.
pub fn caption(objects: &[SceneObject], background: Background, template: usize) -> String {
    let one = |object: &SceneObject| noun_phrase(1, object.colour, object.label);
    let on_background = |what: String| format!("{what} on a {} background", background.word());
    match objects {
        [only] => match template % TEMPLATES {
            0 => one(only),
            1 => format!("a picture of {}", one(only)),
            _ => on_background(one(only)),
        },
        [a, b] => {
            let arrangement = Arrangement::between(a.centre(), b.centre())
                .unwrap_or_else(|| Arrangement::nearest(a.centre(), b.centre()));
            if (a.label, a.colour) == (b.label, b.colour) {
                let both = noun_phrase(2, a.colour, a.label);
                let alignment = match arrangement.alignment() {
                    Alignment::Row => "side by side",
                    Alignment::Column => "one above the other",
                    Alignment::Diagonal => "placed diagonally",
                };
                return match template % TEMPLATES {
                    0 => format!("{both} {alignment}"),
                    1 => format!("there are {both} {alignment}"),
                    _ => format!("a picture of {both} {alignment}"),
                };
            }
            let (first, second, arrangement) = if arrangement.reads_first() {
                (a, b, arrangement)
            } else {
                (b, a, arrangement.reversed())
            };
            let forward = relation_phrase(arrangement);
            let backward = relation_phrase(arrangement.reversed());
            match template % TEMPLATES {
                0 => format!("{} {forward} {}", one(first), one(second)),
                1 => format!("{} {backward} {}", one(second), one(first)),
                _ => format!("a picture of {} {forward} {}", one(first), one(second)),
            }
        }
        many => {
            let mut groups: Vec<((usize, usize), usize)> = Vec::new();
            for object in many {
                let key = (object.label, object.colour);
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, count)) => *count += 1,
                    None => groups.push((key, 1)),
                }
            }
            groups.sort_by_key(|&(key, _)| key);
            let phrases: Vec<String> = groups
                .iter()
                .map(|&((label, colour), count)| noun_phrase(count, colour, label))
                .collect();
            let list = match phrases.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => String::new(),
            };
            match template % TEMPLATES {
                0 => list,
                1 => format!("a picture of {list}"),
                _ => on_background(list),
            }
        }
    }
}

/// One object (or group of identical ones) a caption names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mention {
    pub count: usize,
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Fashion-MNIST class.
    pub label: usize,
}

/// What a caption says: the objects it names, in order, and how it arranges a pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptionReading {
    pub mentions: Vec<Mention>,
    /// Where the first object named stands relative to the second ("a bag to the left of a
    /// coat"), when the caption says.
    pub arrangement: Option<Arrangement>,
    /// How two identical objects line up ("two bags side by side"), when the caption says.
    pub alignment: Option<Alignment>,
}

impl CaptionReading {
    /// Every object named, a group of `n` counted `n` times, as (class, colour), sorted.
    pub fn objects(&self) -> Vec<(usize, usize)> {
        let mut all: Vec<(usize, usize)> = self
            .mentions
            .iter()
            .flat_map(|m| std::iter::repeat_n((m.label, m.colour), m.count))
            .collect();
        all.sort_unstable();
        all
    }
}

/// Reads what any caption in the scenes' language says; words it does not know are skipped.
pub fn read_caption(text: &str) -> CaptionReading {
    let words = words(text);
    let at = |i: usize| words.get(i).map(String::as_str);
    let count_of = |word: Option<&str>| COUNT_WORDS.iter().position(|&c| Some(c) == word);
    let mut reading = CaptionReading::default();
    for (i, word) in words.iter().enumerate() {
        let Some(colour) = COLOURS.iter().position(|(name, _)| name == word) else {
            continue;
        };
        for (label, &(singular, plural)) in NOUNS.iter().enumerate() {
            // "a pair of red trousers": the colour sits inside the noun, the count before it.
            let (singular_tail, plural_tail, count_at) = match singular.strip_prefix("pair of ") {
                Some(rest) => (rest, rest, 3),
                None => (singular, plural, 1),
            };
            let follows = |noun: &str| {
                noun.split(' ')
                    .enumerate()
                    .all(|(k, part)| at(i + 1 + k) == Some(part))
            };
            let is_plural = if follows(singular_tail) {
                count_at == 3 && at(i.wrapping_sub(2)) == Some("pairs")
            } else if follows(plural_tail) {
                true
            } else {
                continue;
            };
            let count = match at(i.wrapping_sub(count_at)) {
                Some("an") => 1,
                word => count_of(word).filter(|&n| n > 0).unwrap_or(1),
            }
            .max(usize::from(is_plural) + 1);
            reading.mentions.push(Mention {
                count,
                colour,
                label,
            });
            break;
        }
    }
    let has = |phrase: &str| {
        let phrase: Vec<&str> = phrase.split(' ').collect();
        words
            .windows(phrase.len())
            .any(|w| w.iter().map(String::as_str).eq(phrase.iter().copied()))
    };
    if has("side by side") {
        reading.alignment = Some(Alignment::Row);
    } else if has("one above the other") {
        reading.alignment = Some(Alignment::Column);
    } else if has("placed diagonally") {
        reading.alignment = Some(Alignment::Diagonal);
    } else {
        let vertical = if has("above") {
            -1
        } else if has("below") {
            1
        } else {
            0
        };
        let horizontal = if has("to the left of") {
            -1
        } else if has("to the right of") {
            1
        } else {
            0
        };
        if (horizontal, vertical) != (0, 0) {
            reading.arrangement = Some(Arrangement {
                horizontal,
                vertical,
            });
        }
    }
    reading
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(label: usize, colour: usize, centre: (f32, f32)) -> SceneObject {
        SceneObject::centred_at(label, colour, centre)
    }

    // Labels: 7 sneaker, 8 bag, 1 trousers, 4 coat. Colours: 0 red, 2 blue, 4 white.
    #[test]
    fn one_object_is_named_with_its_colour_and_background() {
        let scene = [object(7, 0, (20.0, 40.0))];
        assert_eq!(caption(&scene, Background::Black, 0), "a red sneaker");
        assert_eq!(
            caption(&scene, Background::Black, 1),
            "a picture of a red sneaker"
        );
        assert_eq!(
            caption(&scene, Background::Striped, 2),
            "a red sneaker on a striped background"
        );
        let trousers = [object(1, 4, (32.0, 32.0))];
        assert_eq!(
            caption(&trousers, Background::Black, 0),
            "a pair of white trousers"
        );
    }

    #[test]
    fn a_row_is_related_left_and_right_whatever_the_order_painted() {
        for scene in [
            [object(7, 0, (15.0, 30.0)), object(8, 2, (45.0, 34.0))],
            [object(8, 2, (45.0, 34.0)), object(7, 0, (15.0, 30.0))],
        ] {
            assert_eq!(
                caption(&scene, Background::Black, 0),
                "a red sneaker to the left of a blue bag"
            );
            assert_eq!(
                caption(&scene, Background::Black, 1),
                "a blue bag to the right of a red sneaker"
            );
        }
    }

    #[test]
    fn a_column_or_diagonal_is_related_above_and_below() {
        let column = [object(8, 0, (40.0, 50.0)), object(4, 4, (42.0, 12.0))];
        assert_eq!(
            caption(&column, Background::Black, 0),
            "a white coat above a red bag"
        );
        assert_eq!(
            caption(&column, Background::Black, 1),
            "a red bag below a white coat"
        );
        let diagonal = [object(4, 4, (48.0, 14.0)), object(8, 0, (16.0, 46.0))];
        assert_eq!(
            caption(&diagonal, Background::Black, 0),
            "a white coat above and to the right of a red bag"
        );
        assert_eq!(
            caption(&diagonal, Background::Black, 1),
            "a red bag below and to the left of a white coat"
        );
    }

    #[test]
    fn identical_objects_are_counted_and_lists_go_by_class() {
        let pair = [object(7, 0, (20.0, 12.0)), object(7, 0, (21.0, 50.0))];
        assert_eq!(
            caption(&pair, Background::Black, 0),
            "two red sneakers one above the other"
        );
        let many = [
            object(7, 0, (10.0, 10.0)),
            object(1, 2, (50.0, 10.0)),
            object(7, 0, (10.0, 50.0)),
            object(1, 2, (50.0, 50.0)),
        ];
        assert_eq!(
            caption(&many, Background::Black, 0),
            "two pairs of blue trousers and two red sneakers"
        );
        let three = [
            object(8, 4, (10.0, 10.0)),
            object(7, 0, (50.0, 10.0)),
            object(4, 2, (50.0, 50.0)),
        ];
        assert_eq!(
            caption(&three, Background::Noisy, 2),
            "a blue coat, a red sneaker and a white bag on a noisy background"
        );
    }

    #[test]
    fn every_phrasing_reads_back_as_its_objects_and_arrangement() {
        let scenes: Vec<Vec<SceneObject>> = vec![
            vec![object(1, 3, (30.0, 30.0))],
            vec![object(7, 0, (15.0, 30.0)), object(8, 2, (45.0, 34.0))],
            vec![object(4, 4, (48.0, 14.0)), object(9, 0, (16.0, 46.0))],
            vec![object(1, 1, (20.0, 12.0)), object(1, 1, (21.0, 50.0))],
            vec![
                object(1, 2, (10.0, 10.0)),
                object(9, 0, (50.0, 10.0)),
                object(1, 2, (10.0, 50.0)),
            ],
        ];
        for objects in scenes {
            let mut truth: Vec<(usize, usize)> =
                objects.iter().map(|o| (o.label, o.colour)).collect();
            truth.sort_unstable();
            for template in 0..TEMPLATES {
                let text = caption(&objects, Background::Checked, template);
                let reading = read_caption(&text);
                assert_eq!(reading.objects(), truth, "{text}");
                if let [a, b] = &objects[..] {
                    let arrangement = Arrangement::between(a.centre(), b.centre()).unwrap();
                    if (a.label, a.colour) == (b.label, b.colour) {
                        assert_eq!(reading.alignment, Some(arrangement.alignment()), "{text}");
                    } else {
                        // The first object named stands as the caption says to the second.
                        let first = reading.mentions[0];
                        let said = reading.arrangement.unwrap();
                        let expected = if (first.label, first.colour) == (a.label, a.colour) {
                            arrangement
                        } else {
                            arrangement.reversed()
                        };
                        assert_eq!(said, expected, "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn colour_names_take_the_right_article() {
        assert_eq!(noun_phrase(1, 3, 8), "a yellow bag");
        assert_eq!(article("orange"), "an");
    }
}
