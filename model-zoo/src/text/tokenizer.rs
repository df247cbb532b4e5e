//! Word-level tokenizer shared by every language model: lower-cased words and single
//! punctuation marks, a vocabulary of the most frequent training words, and `<unk>`, `<bos>`,
//! `<eos>` for the rest, the start and the end of a verse. Saved beside the weights as
//! `vocab.txt`, one token per line in id order.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Result, ZooError};

pub const UNK: &str = "<unk>";
pub const BOS: &str = "<bos>";
pub const EOS: &str = "<eos>";
/// Ids of the special tokens, which every vocabulary starts with.
pub const UNK_ID: u32 = 0;
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;

/// Vocabulary and the rules that split text into its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenizer {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

/// Split text into lower-cased words and punctuation marks. A word is a run of letters and
/// digits, with apostrophes and hyphens allowed inside it ("don't", "well-known").
pub fn split_words(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().map(normalise_apostrophe).collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || (is_joiner(chars[i])
                        && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(word.to_lowercase());
        } else {
            if !c.is_whitespace() && !c.is_control() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

fn normalise_apostrophe(c: char) -> char {
    if c == '\u{2019}' { '\'' } else { c }
}

fn is_joiner(c: char) -> bool {
    c == '\'' || c == '-'
}

impl Tokenizer {
    /// The `max_size` most frequent tokens of `texts` (ties broken alphabetically, so the
    /// result does not depend on hash order), after the three special tokens.
    pub fn fit<'a>(texts: impl IntoIterator<Item = &'a str>, max_size: usize) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in texts {
            for word in split_words(text) {
                *counts.entry(word).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let specials = [UNK, BOS, EOS].map(String::from);
        let keep = max_size.saturating_sub(specials.len());
        Self::from_words(
            specials
                .into_iter()
                .chain(ranked.into_iter().take(keep).map(|(w, _)| w))
                .collect(),
        )
        .expect("specials come first")
    }

    /// A tokenizer over `words` in id order; the first three must be the special tokens.
    pub fn from_words(words: Vec<String>) -> Result<Self, String> {
        if words.len() < 3 || words[0] != UNK || words[1] != BOS || words[2] != EOS {
            return Err(format!("a vocabulary starts with {UNK}, {BOS}, {EOS}"));
        }
        let mut ids = HashMap::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            if ids.insert(w.clone(), i as u32).is_some() {
                return Err(format!("'{w}' appears twice in the vocabulary"));
            }
        }
        Ok(Self { words, ids })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ZooError::io(path, e))?;
        Self::from_words(text.lines().map(String::from).collect()).map_err(|reason| {
            ZooError::Format {
                path: path.to_path_buf(),
                format: "vocabulary",
                reason,
            }
        })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = self.words.join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|e| ZooError::io(path, e))
    }

    pub fn vocab_size(&self) -> usize {
        self.words.len()
    }

    pub fn id(&self, word: &str) -> u32 {
        self.ids.get(word).copied().unwrap_or(UNK_ID)
    }

    pub fn word(&self, id: u32) -> &str {
        self.words.get(id as usize).map_or(UNK, String::as_str)
    }

    /// Token ids of `text`, without `<bos>`/`<eos>`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        split_words(text).iter().map(|w| self.id(w)).collect()
    }

    /// A verse as the models see it in training: `<bos>`, its tokens, `<eos>`.
    pub fn encode_verse(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![BOS_ID];
        ids.extend(self.encode(text));
        ids.push(EOS_ID);
        ids
    }

    /// A prompt: `<bos>` then its tokens, ready for the next token to be predicted.
    pub fn encode_prompt(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![BOS_ID];
        ids.extend(self.encode(text));
        ids
    }

    /// Readable text from token ids, with no space before closing punctuation or after
    /// opening punctuation; `<bos>`/`<eos>` are left out.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        let mut previous: Option<&str> = None;
        for &id in ids {
            if id == BOS_ID || id == EOS_ID {
                continue;
            }
            let word = self.word(id);
            out.push_str(spacing_before(previous, word));
            out.push_str(word);
            previous = Some(word);
        }
        out
    }

    /// The text a token adds when it follows `previous` (the token itself plus any space).
    pub fn continuation(&self, previous: Option<u32>, id: u32) -> String {
        if id == BOS_ID || id == EOS_ID {
            return String::new();
        }
        let word = self.word(id);
        let previous = previous
            .filter(|&p| p != BOS_ID && p != EOS_ID)
            .map(|p| self.word(p));
        format!("{}{word}", spacing_before(previous, word))
    }
}

fn spacing_before(previous: Option<&str>, word: &str) -> &'static str {
    const CLOSING: &[&str] = &[
        ".", ",", ";", ":", "!", "?", ")", "]", "\u{201d}", "'", "\u{bb}",
    ];
    const OPENING: &[&str] = &[
        "(", "[", "\u{201c}", "\u{2018}", "\u{bf}", "\u{a1}", "\u{ab}",
    ];
    match previous {
        None => "",
        Some(p) if OPENING.contains(&p) => "",
        Some(_) if CLOSING.contains(&word) => "",
        Some(_) => " ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_and_punctuation() {
        assert_eq!(
            split_words("“Don’t fear,” said God’s well-known angel; ¿Qué?"),
            [
                "“",
                "don't",
                "fear",
                ",",
                "”",
                "said",
                "god's",
                "well-known",
                "angel",
                ";",
                "¿",
                "qué",
                "?"
            ]
        );
        assert_eq!(
            split_words("  end- 'quoted' "),
            ["end", "-", "'", "quoted", "'"]
        );
    }

    #[test]
    fn vocabulary_is_frequency_ranked_with_specials_first() {
        let t = Tokenizer::fit(["b a b c", "b a"], 5);
        assert_eq!(t.vocab_size(), 5);
        assert_eq!((t.word(3), t.word(4)), ("b", "a"));
        assert_eq!(t.encode("a c zebra"), [4, UNK_ID, UNK_ID]);
        assert_eq!(t.encode_verse("b"), [BOS_ID, 3, EOS_ID]);
    }

    #[test]
    fn decode_restores_spacing() {
        let t = Tokenizer::fit(["“ in the beginning , god created . ”"], 100);
        let ids = t.encode_verse("“In the beginning, God created.”");
        assert_eq!(t.decode(&ids), "“in the beginning, god created.”");
        assert_eq!(t.continuation(Some(t.id("beginning")), t.id(",")), ",");
        assert_eq!(t.continuation(Some(BOS_ID), t.id("god")), "god");
        assert_eq!(
            t.continuation(Some(t.id("god")), t.id("created")),
            " created"
        );
    }

    #[test]
    fn save_and_load_round_trip() {
        let t = Tokenizer::fit(["x y z"], 10);
        let path = std::env::temp_dir().join(format!("kiln-vocab-{}.txt", std::process::id()));
        t.save(&path).unwrap();
        assert_eq!(Tokenizer::load(&path).unwrap(), t);
        std::fs::write(&path, "a\nb\n").unwrap();
        assert!(Tokenizer::load(&path).is_err());
    }
}
