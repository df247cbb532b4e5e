//! Caption quality against the ground truth: corpus BLEU-4 (Papineni et al., 2002: n-gram
//! counts clipped by the most any reference holds, 1- to 4-gram precisions, geometric
//! mean, brevity penalty against the reference closest in length) and exact match with
//! any reference. A scene's references are its caption's every phrasing.

use std::collections::HashMap;

use crate::captioning::vocabulary::words;

/// Scores of a set of captions, each against its references.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptionScore {
    pub samples: usize,
    /// Corpus BLEU-4, 0..1.
    pub bleu4: f64,
    /// Fraction of captions equal to one of their references word for word.
    pub exact_match: f64,
}

fn ngrams(words: &[&str], n: usize) -> HashMap<Vec<String>, usize> {
    let mut counts = HashMap::new();
    for window in words.windows(n) {
        *counts
            .entry(window.iter().map(|w| w.to_string()).collect())
            .or_insert(0) += 1;
    }
    counts
}

/// Score `(candidate, references)` pairs; every candidate needs at least one reference.
pub fn score_captions<'a, R>(pairs: impl IntoIterator<Item = (&'a str, R)>) -> CaptionScore
where
    R: IntoIterator<Item = &'a str>,
{
    let (mut matched, mut total) = ([0usize; 4], [0usize; 4]);
    let (mut candidate_length, mut reference_length) = (0usize, 0usize);
    let (mut samples, mut exact) = (0usize, 0usize);
    for (candidate, references) in pairs {
        let candidate = words(candidate);
        let candidate: Vec<&str> = candidate.iter().map(String::as_str).collect();
        let references: Vec<Vec<String>> = references.into_iter().map(words).collect();
        let references: Vec<Vec<&str>> = references
            .iter()
            .map(|r| r.iter().map(String::as_str).collect())
            .collect();
        samples += 1;
        exact += usize::from(references.contains(&candidate));
        candidate_length += candidate.len();
        // The reference closest in length, the shorter on a tie.
        reference_length += references
            .iter()
            .map(Vec::len)
            .min_by_key(|&len| (len.abs_diff(candidate.len()), len))
            .unwrap_or(0);
        for n in 1..=4 {
            let mut most: HashMap<Vec<String>, usize> = HashMap::new();
            for reference in &references {
                for (gram, count) in ngrams(reference, n) {
                    let entry = most.entry(gram).or_insert(0);
                    *entry = (*entry).max(count);
                }
            }
            for (gram, count) in ngrams(&candidate, n) {
                matched[n - 1] += count.min(most.get(&gram).copied().unwrap_or(0));
                total[n - 1] += count;
            }
        }
    }
    let bleu4 = if matched.contains(&0) || candidate_length == 0 {
        0.0
    } else {
        let log_precision: f64 = (0..4)
            .map(|i| (matched[i] as f64 / total[i] as f64).ln())
            .sum::<f64>()
            / 4.0;
        let brevity = if candidate_length >= reference_length {
            1.0
        } else {
            (1.0 - reference_length as f64 / candidate_length as f64).exp()
        };
        brevity * log_precision.exp()
    };
    CaptionScore {
        samples,
        bleu4,
        exact_match: if samples == 0 {
            0.0
        } else {
            exact as f64 / samples as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_captions_score_one() {
        let score = score_captions([
            (
                "a red sneaker to the left of a blue bag",
                ["a red sneaker to the left of a blue bag"],
            ),
            (
                "two white coats side by side",
                ["two white coats side by side"],
            ),
        ]);
        assert_eq!(score.samples, 2);
        assert!((score.bleu4 - 1.0).abs() < 1e-12);
        assert_eq!(score.exact_match, 1.0);
    }

    #[test]
    fn bleu_follows_the_definition() {
        // 7 candidate words against 9: clipped 1- to 4-gram precisions 6/7, 4/6, 3/5, 2/4
        // and the brevity penalty exp(1 - 9/7).
        let score = score_captions([(
            "a red sneaker to the right bag",
            ["a red sneaker to the left of a bag"],
        )]);
        let precisions: f64 = (6.0 / 7.0) * (4.0 / 6.0) * (3.0 / 5.0) * (2.0 / 4.0);
        let expected = (1.0f64 - 9.0 / 7.0).exp() * precisions.powf(0.25);
        assert!((score.bleu4 - expected).abs() < 1e-12, "{}", score.bleu4);
        assert_eq!(score.exact_match, 0.0);
    }

    #[test]
    fn no_shared_four_gram_scores_zero() {
        let score = score_captions([("a red bag", ["a blue coat above a red bag"])]);
        assert_eq!(score.bleu4, 0.0);
    }

    #[test]
    fn any_reference_counts() {
        let references = ["a red bag on a black background", "a picture of a red bag"];
        let score = score_captions([("a picture of a red bag", references)]);
        assert_eq!(score.exact_match, 1.0);
        assert!((score.bleu4 - 1.0).abs() < 1e-12);
        // Counts clipped by the most any one reference holds ("a" twice, "red bag" once);
        // 9 words against the closer length 7: no brevity penalty.
        let score = score_captions([("a picture of a red bag a red bag", references)]);
        let precisions: f64 = (6.0 / 9.0) * (5.0 / 8.0) * (4.0 / 7.0) * (3.0 / 6.0);
        assert!((score.bleu4 - precisions.powf(0.25)).abs() < 1e-12);
        assert_eq!(score.exact_match, 0.0);
    }
}
