//! Held-out evaluation of classifiers and captioners.

use crate::captioning::captioner::{CaptionOptions, Captioner};
use crate::captioning::metrics::{CaptionScore, score_captions};
use crate::classifier::{ImageClassifier, top_k};
pub use crate::data::fashion_mnist::CLASSES;
use crate::data::fashion_mnist::FashionMnist;
use crate::data::scenes::{CaptionReading, Mention, Scene, SceneObject, read_caption};
use crate::error::Result;
use crate::image_input::ImageSpec;

/// Top-1 and top-5 accuracy over a labelled set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    pub samples: usize,
    pub top1: f64,
    pub top5: f64,
}

/// Evaluate a classifier on every image of a Fashion-MNIST split, `batch_size` at a time.
pub fn evaluate_fashion_mnist(
    classifier: &ImageClassifier,
    data: &FashionMnist,
    spec: &ImageSpec,
    batch_size: usize,
) -> Result<Accuracy> {
    let ranked = ranked_classes(classifier, data, spec, batch_size)?;
    Ok(accuracy(&ranked, data))
}

/// Top-1 and top-5 accuracy of rankings of a split's images (in order) against its labels.
pub fn accuracy(ranked: &[Vec<usize>], data: &FashionMnist) -> Accuracy {
    let (mut top1, mut top5) = (0usize, 0usize);
    for (i, best) in ranked.iter().enumerate() {
        top1 += usize::from(best[0] == data.label(i));
        top5 += usize::from(best.contains(&data.label(i)));
    }
    let n = ranked.len().max(1) as f64;
    Accuracy {
        samples: ranked.len(),
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
    }
}

/// The five most probable classes of every image of a split, best first.
pub fn ranked_classes(
    classifier: &ImageClassifier,
    data: &FashionMnist,
    spec: &ImageSpec,
    batch_size: usize,
) -> Result<Vec<Vec<usize>>> {
    let mut ranked = Vec::with_capacity(data.len());
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let inputs = chunk
            .iter()
            .map(|&i| fashion_mnist_input(data, i, spec))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        for probabilities in classifier.classify_batch(&refs)? {
            ranked.push(top_k(&probabilities, 5));
        }
    }
    Ok(ranked)
}

/// Share of images whose top-1 class is the same in both rankings (e.g. f16 against f32).
pub fn top1_agreement(a: &[Vec<usize>], b: &[Vec<usize>]) -> f64 {
    let agreed = a.iter().zip(b).filter(|(x, y)| x[0] == y[0]).count();
    agreed as f64 / a.len().min(b.len()).max(1) as f64
}

/// Model input for image `index`, preprocessed exactly as the server preprocesses uploads.
pub fn fashion_mnist_input(
    data: &FashionMnist,
    index: usize,
    spec: &ImageSpec,
) -> Result<Vec<f32>> {
    let pixels: Vec<f32> = data.image(index).iter().map(|&p| f32::from(p)).collect();
    spec.from_pixels(28, 28, 1, &pixels)
}

/// Perplexity and next-word accuracy of a language model over a token stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LanguageModelScore {
    /// Tokens predicted.
    pub tokens: usize,
    pub perplexity: f64,
    pub top1: f64,
    pub top5: f64,
    #[serde(skip)]
    log_prob_sum: f64,
    #[serde(skip)]
    top1_hits: usize,
    #[serde(skip)]
    top5_hits: usize,
}

impl LanguageModelScore {
    /// Count one predicted token: its natural-log probability and its rank among the
    /// model's five best guesses (`None` when it is not among them).
    pub fn add(&mut self, log_prob: f64, rank: Option<usize>) {
        self.tokens += 1;
        self.log_prob_sum += log_prob;
        self.top1_hits += usize::from(rank == Some(0));
        self.top5_hits += usize::from(rank.is_some_and(|r| r < 5));
    }

    /// Fill in the averages from the counts.
    pub fn finish(mut self) -> Self {
        let n = self.tokens.max(1) as f64;
        self.perplexity = (-self.log_prob_sum / n).exp();
        self.top1 = self.top1_hits as f64 / n;
        self.top5 = self.top5_hits as f64 / n;
        self
    }
}

/// Test scenes of each distribution `kiln eval` scores a captioner on, unless told otherwise.
pub const CAPTION_TEST_SCENES: usize = 1_000;

/// How well captions of a set of scenes read: as text against every phrasing of the truth,
/// and fact by fact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneCaptionScore {
    pub text: CaptionScore,
    pub facts: CaptionFacts,
    pub classes: SingleObjectClasses,
}

/// Captions of `scenes` scored against every phrasing of their true captions, and what they
/// say checked against the scenes' objects. `reference`, when given, is a classifier's top
/// class for every image of the scenes' source split, by index: how often it names the
/// clean source image of each single object goes into [`SingleObjectClasses`].
pub fn evaluate_captioner(
    captioner: &Captioner,
    scenes: &[Scene],
    batch_size: usize,
    options: &CaptionOptions,
    reference: Option<&[usize]>,
) -> Result<SceneCaptionScore> {
    let mut predicted = Vec::with_capacity(scenes.len());
    for chunk in scenes.chunks(batch_size.max(1)) {
        let images: Vec<Vec<f32>> = chunk.iter().map(Scene::input).collect();
        predicted.extend(captioner.caption(&images, options)?);
    }
    let references: Vec<Vec<String>> = scenes.iter().map(Scene::references).collect();
    let text = score_captions(
        predicted
            .iter()
            .zip(&references)
            .map(|(caption, references)| {
                (caption.text.as_str(), references.iter().map(String::as_str))
            }),
    );
    let mut facts = CaptionFacts::default();
    let mut classes = SingleObjectClasses::default();
    for (scene, caption) in scenes.iter().zip(&predicted) {
        facts.add(scene, &caption.text);
        classes.add(scene, &caption.text, reference);
    }
    Ok(SceneCaptionScore {
        text,
        facts,
        classes,
    })
}

/// Single objects by their true class: what their captions call them, and how often a
/// reference classifier names their clean 28×28 source image — whether the captioner misses
/// the images any classifier finds hard, or others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleObjectClasses {
    /// `said[truth][class]`: objects of class `truth` whose caption names one `class` and
    /// nothing else; the last column, [`SingleObjectClasses::UNCLEAR`], counts captions
    /// that name none, several or a group.
    pub said: [[usize; CLASSES + 1]; CLASSES],
    /// Objects whose source image the reference classifier names right.
    pub reference_right: [usize; CLASSES],
    /// Of those, the objects whose caption names them right too.
    pub named_where_reference_right: [usize; CLASSES],
}

impl Default for SingleObjectClasses {
    fn default() -> Self {
        Self {
            said: [[0; CLASSES + 1]; CLASSES],
            reference_right: [0; CLASSES],
            named_where_reference_right: [0; CLASSES],
        }
    }
}

impl SingleObjectClasses {
    /// The column of captions that name no single class.
    pub const UNCLEAR: usize = CLASSES;

    /// Counts what `caption` calls the object of a one-object `scene` (other scenes are
    /// skipped); `reference` as for [`evaluate_captioner`].
    pub fn add(&mut self, scene: &Scene, caption: &str, reference: Option<&[usize]>) {
        let [object] = &scene.objects[..] else {
            return;
        };
        let reading = read_caption(caption);
        let said = match reading.mentions[..] {
            [mention] if mention.count == 1 => mention.label,
            _ => Self::UNCLEAR,
        };
        let truth = object.label;
        self.said[truth][said] += 1;
        if let Some(&reference_said) = reference.and_then(|r| r.get(object.source))
            && reference_said == truth
        {
            self.reference_right[truth] += 1;
            self.named_where_reference_right[truth] += usize::from(said == truth);
        }
    }

    /// Adds another tally's counts to this one.
    pub fn merge(&mut self, other: &Self) {
        for truth in 0..CLASSES {
            for said in 0..=CLASSES {
                self.said[truth][said] += other.said[truth][said];
            }
            self.reference_right[truth] += other.reference_right[truth];
            self.named_where_reference_right[truth] += other.named_where_reference_right[truth];
        }
    }

    /// Single objects of class `truth`.
    pub fn objects(&self, truth: usize) -> usize {
        self.said[truth].iter().sum()
    }

    /// Single objects of class `truth` their captions name right.
    pub fn named(&self, truth: usize) -> usize {
        self.said[truth][truth]
    }

    /// What objects of class `truth` were called instead, most often first, as (class or
    /// [`Self::UNCLEAR`], objects); only what happened.
    pub fn mistakes(&self, truth: usize) -> Vec<(usize, usize)> {
        let mut mistakes: Vec<(usize, usize)> = (0..=CLASSES)
            .filter(|&said| said != truth && self.said[truth][said] > 0)
            .map(|said| (said, self.said[truth][said]))
            .collect();
        mistakes.sort_by_key(|&(said, count)| (std::cmp::Reverse(count), said));
        mistakes
    }
}

/// Facts captions got right: for scenes of one object, its class and its colour; for
/// pairs, both classes and how the two stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptionFacts {
    pub singles: usize,
    /// Single objects whose class the caption names (and nothing else).
    pub named: usize,
    /// Single objects whose colour the caption names.
    pub coloured: usize,
    pub pairs: usize,
    /// Pairs whose caption names both classes (and nothing else).
    pub both_named: usize,
    /// Pairs whose caption arranges them right: the first object named stands as said to
    /// the second ("to the left of", "above and to the right of"), each matched to the
    /// scene's object of its class (then colour); or, for two identical objects, they line
    /// up as said ("side by side").
    pub related: usize,
}

/// `part / whole`, or `None` for an empty whole.
pub fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl CaptionFacts {
    /// Counts what `caption` gets right about `scene`.
    pub fn add(&mut self, scene: &Scene, caption: &str) {
        let reading = read_caption(caption);
        match &scene.objects[..] {
            [only] => {
                self.singles += 1;
                if let [mention] = reading.mentions[..] {
                    self.named += usize::from(mention.count == 1 && mention.label == only.label);
                    self.coloured += usize::from(mention.colour == only.colour);
                }
            }
            [a, b] => {
                self.pairs += 1;
                let mut labels: Vec<usize> = reading.objects().iter().map(|o| o.0).collect();
                let mut truth = vec![a.label, b.label];
                labels.sort_unstable();
                truth.sort_unstable();
                self.both_named += usize::from(labels == truth);
                let Some(arrangement) = scene.arrangement() else {
                    return;
                };
                let related = if (a.label, a.colour) == (b.label, b.colour) {
                    reading.alignment == Some(arrangement.alignment())
                } else {
                    Self::first_named_is(&reading, scene).is_some_and(|first_is_a| {
                        let truth = if first_is_a {
                            arrangement
                        } else {
                            arrangement.reversed()
                        };
                        reading.arrangement == Some(truth)
                    })
                };
                self.related += usize::from(related);
            }
            _ => {}
        }
    }

    /// Whether the caption's first object is the pair's first (`true`) or second, matching
    /// both mentions to the objects by class, then colour; `None` when it cannot be told.
    fn first_named_is(reading: &CaptionReading, scene: &Scene) -> Option<bool> {
        let ([m1, m2, ..], [a, b]) = (&reading.mentions[..], &scene.objects[..]) else {
            return None;
        };
        let likeness = |m: &Mention, o: &SceneObject| {
            2 * usize::from(m.label == o.label) + usize::from(m.colour == o.colour)
        };
        let (straight, crossed) = (
            (likeness(m1, a), likeness(m2, b)),
            (likeness(m1, b), likeness(m2, a)),
        );
        let total = |(x, y): (usize, usize)| x + y;
        let fits = |(x, y): (usize, usize)| x > 0 && y > 0;
        match total(straight).cmp(&total(crossed)) {
            std::cmp::Ordering::Greater if fits(straight) => Some(true),
            std::cmp::Ordering::Less if fits(crossed) => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::scenes::{Background, caption};

    fn scene(objects: &[(usize, usize, (f32, f32))]) -> Scene {
        let objects: Vec<SceneObject> = objects
            .iter()
            .map(|&(label, colour, centre)| SceneObject::centred_at(label, colour, centre))
            .collect();
        Scene {
            caption: caption(&objects, Background::Black, 0),
            objects,
            background: Background::Black,
            pixels: Vec::new(),
        }
    }

    fn facts(scene: &Scene, captions: &[&str]) -> CaptionFacts {
        let mut facts = CaptionFacts::default();
        for caption in captions {
            facts.add(scene, caption);
        }
        facts
    }

    // Labels: 7 sneaker, 8 bag, 4 coat. Colours: 0 red, 2 blue, 4 white.
    #[test]
    fn a_single_object_is_named_and_coloured_separately() {
        let single = scene(&[(7, 0, (30.0, 30.0))]);
        let counted = facts(
            &single,
            &[
                "a red sneaker",
                "a picture of a blue sneaker",
                "a red bag on a black background",
                "a red sneaker and a red bag",
                "two red sneakers side by side",
            ],
        );
        assert_eq!(
            (counted.singles, counted.named, counted.coloured),
            (5, 2, 3),
            "{counted:?}"
        );
    }

    #[test]
    fn a_pair_is_related_from_the_first_object_named_whatever_the_phrasing() {
        // The sneaker is left of the bag.
        let pair = scene(&[(7, 0, (15.0, 30.0)), (8, 2, (48.0, 32.0))]);
        let right = [
            "a red sneaker to the left of a blue bag",
            "a blue bag to the right of a red sneaker",
            // Colours wrong, classes right: the classes still say which is which.
            "a picture of a white sneaker to the left of a white bag",
        ];
        let counted = facts(&pair, &right);
        assert_eq!(
            (counted.pairs, counted.both_named, counted.related),
            (3, 3, 3)
        );
        let wrong = [
            "a blue bag to the left of a red sneaker",
            "a red sneaker above a blue bag",
            // One class wrong: matched by colour, the arrangement is right.
            "a red sneaker to the left of a blue coat",
            "two red sneakers side by side",
        ];
        let counted = facts(&pair, &wrong);
        assert_eq!((counted.both_named, counted.related), (2, 1), "{counted:?}");
    }

    #[test]
    fn single_objects_are_tallied_by_what_their_caption_calls_them() {
        // Labels: 0 t-shirt, 6 shirt, 7 sneaker. Source images 0 and 1.
        let mut shirt = scene(&[(6, 4, (30.0, 30.0))]);
        shirt.objects[0].source = 1;
        let sneaker = scene(&[(7, 0, (30.0, 30.0))]);
        // The reference names image 0 a sneaker (right) and image 1 a t-shirt (wrong).
        let reference = [7, 0];
        let mut classes = SingleObjectClasses::default();
        let mut facts = CaptionFacts::default();
        for (scene, caption) in [
            (&shirt, "a white shirt"),
            (&shirt, "a white t-shirt"),
            (&shirt, "a picture of a white t-shirt"),
            (&shirt, "two white shirts side by side"),
            (&sneaker, "a red sneaker"),
            (&sneaker, "a red sneaker and a red bag"),
            (&pair_of_sneaker_and_bag(), "a red sneaker"),
        ] {
            classes.add(scene, caption, Some(&reference));
            facts.add(scene, caption);
        }
        assert_eq!((classes.objects(6), classes.named(6)), (4, 1));
        assert_eq!(
            classes.mistakes(6),
            [(0, 2), (SingleObjectClasses::UNCLEAR, 1)]
        );
        assert_eq!((classes.objects(7), classes.named(7)), (2, 1));
        assert_eq!(classes.mistakes(7), [(SingleObjectClasses::UNCLEAR, 1)]);
        // The same count of named single objects as the facts.
        let named: usize = (0..CLASSES).map(|c| classes.named(c)).sum();
        assert_eq!((named, facts.singles), (facts.named, 6));
        assert_eq!(
            (classes.reference_right, classes.named_where_reference_right),
            (
                [0, 0, 0, 0, 0, 0, 0, 2, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
            )
        );
        let mut twice = classes;
        twice.merge(&classes);
        assert_eq!((twice.objects(6), twice.reference_right[7]), (8, 4));
    }

    fn pair_of_sneaker_and_bag() -> Scene {
        scene(&[(7, 0, (15.0, 30.0)), (8, 2, (48.0, 32.0))])
    }

    #[test]
    fn identical_objects_need_their_alignment() {
        let column = scene(&[(4, 4, (30.0, 10.0)), (4, 4, (31.0, 50.0))]);
        let counted = facts(
            &column,
            &[
                "two white coats one above the other",
                "two white coats side by side",
                "a white coat above a white coat",
            ],
        );
        assert_eq!((counted.both_named, counted.related), (3, 1), "{counted:?}");
    }
}
