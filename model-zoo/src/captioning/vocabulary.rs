//! The closed vocabulary of scene captions: every word the scene generator can write, plus
//! padding, start and end tokens. Commas are words of their own.

use crate::error::{Result, ZooError};

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;

const WORDS: [&str; 60] = [
    "<pad>",
    "<bos>",
    "<eos>",
    ",",
    "a",
    "an",
    "two",
    "three",
    "four",
    "picture",
    "of",
    "on",
    "black",
    "grey",
    "noisy",
    "striped",
    "checked",
    "background",
    "there",
    "are",
    "to",
    "the",
    "left",
    "right",
    "above",
    "below",
    "and",
    "side",
    "by",
    "one",
    "other",
    "placed",
    "diagonally",
    "red",
    "green",
    "blue",
    "yellow",
    "white",
    "t-shirt",
    "t-shirts",
    "pair",
    "pairs",
    "trousers",
    "pullover",
    "pullovers",
    "dress",
    "dresses",
    "coat",
    "coats",
    "sandal",
    "sandals",
    "shirt",
    "shirts",
    "sneaker",
    "sneakers",
    "bag",
    "bags",
    "ankle",
    "boot",
    "boots",
];

/// The words of a caption as the vocabulary counts them: commas stand alone.
pub fn words(caption: &str) -> Vec<String> {
    caption
        .replace(',', " , ")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Word ↔ id for captions.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaptionVocabulary;

impl CaptionVocabulary {
    pub fn len(&self) -> usize {
        WORDS.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn word(&self, id: u32) -> Option<&'static str> {
        WORDS.get(id as usize).copied()
    }

    pub fn id(&self, word: &str) -> Option<u32> {
        WORDS.iter().position(|&w| w == word).map(|i| i as u32)
    }

    /// `<bos>`, the caption's words, `<eos>`. Unknown words are an error.
    pub fn encode(&self, caption: &str) -> Result<Vec<u32>> {
        let mut ids = vec![BOS];
        for word in words(caption) {
            ids.push(self.id(&word).ok_or_else(|| {
                ZooError::InvalidInput(format!("{word:?} is not in the caption vocabulary"))
            })?);
        }
        ids.push(EOS);
        Ok(ids)
    }

    /// The words of `ids` up to the first `<eos>`, without special tokens, commas attached
    /// to the word before them.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut text = String::new();
        for &id in ids.iter().take_while(|&&id| id != EOS) {
            match self.word(id) {
                Some(",") => text.push(','),
                Some(word) if id != PAD && id != BOS => {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(word);
                }
                _ => {}
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_round_trip_through_ids() {
        let vocabulary = CaptionVocabulary;
        let caption = "a white bag, two pairs of red trousers and three blue ankle boots";
        let ids = vocabulary.encode(caption).unwrap();
        assert_eq!((ids[0], *ids.last().unwrap()), (BOS, EOS));
        assert_eq!(vocabulary.decode(&ids), caption);
        assert!(vocabulary.encode("a purple bag").is_err());
    }

    #[test]
    fn every_id_has_one_word() {
        let vocabulary = CaptionVocabulary;
        for id in 0..vocabulary.len() as u32 {
            assert_eq!(vocabulary.id(vocabulary.word(id).unwrap()), Some(id));
        }
        assert_eq!(vocabulary.word(vocabulary.len() as u32), None);
    }
}
