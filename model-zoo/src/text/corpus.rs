//! A Bible module as a language-modelling corpus: verses split into train, validation and
//! test sets by whole book, so no test verse has a neighbour in training.

use std::path::Path;

use super::sword::{Book, read_books};
use super::tokenizer::Tokenizer;
use crate::error::Result;

/// Books whose ordinal leaves this remainder modulo [`SPLIT_MODULUS`] are held out.
const SPLIT_MODULUS: usize = 10;
const VALIDATION_REMAINDER: usize = 4;
const TEST_REMAINDER: usize = 7;

/// Verses of each split, in reading order.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub train: Vec<String>,
    pub validation: Vec<String>,
    pub test: Vec<String>,
}

/// Which split a book belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub fn of_book(ordinal: usize) -> Split {
        match ordinal % SPLIT_MODULUS {
            VALIDATION_REMAINDER => Split::Validation,
            TEST_REMAINDER => Split::Test,
            _ => Split::Train,
        }
    }
}

impl Corpus {
    /// Read the SWORD module in `dir` and split it by book.
    pub fn from_module(dir: &Path) -> Result<Self> {
        Ok(Self::from_books(read_books(dir)?))
    }

    pub fn from_books(books: Vec<Book>) -> Self {
        let mut corpus = Corpus::default();
        for book in books {
            let split = match Split::of_book(book.ordinal) {
                Split::Train => &mut corpus.train,
                Split::Validation => &mut corpus.validation,
                Split::Test => &mut corpus.test,
            };
            split.extend(book.verses);
        }
        corpus
    }

    pub fn verses(&self, split: Split) -> &[String] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }

    /// Every verse of a split as `<bos> … <eos>` token ids.
    pub fn encoded(&self, split: Split, tokenizer: &Tokenizer) -> Vec<Vec<u32>> {
        self.verses(split)
            .iter()
            .map(|v| tokenizer.encode_verse(v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_books_go_to_one_split() {
        let books = (0..20)
            .map(|ordinal| Book {
                ordinal,
                verses: vec![
                    format!("book {ordinal} verse 1"),
                    format!("book {ordinal} verse 2"),
                ],
            })
            .collect();
        let corpus = Corpus::from_books(books);
        assert_eq!(
            corpus.validation,
            [
                "book 4 verse 1",
                "book 4 verse 2",
                "book 14 verse 1",
                "book 14 verse 2"
            ]
        );
        assert_eq!(corpus.test.len(), 4);
        assert_eq!(corpus.train.len(), 32);
    }
}
