//! The packaged Bible modules read end to end (Debian `sword-text-web` and
//! `sword-text-sparv`, installed by scripts/test.sh).

use kiln_zoo::text::corpus::Corpus;
use kiln_zoo::text::sword::{REINA_VALERA_1909, WORLD_ENGLISH_BIBLE, module_dir, read_books};
use kiln_zoo::text::tokenizer::Tokenizer;

#[test]
fn world_english_bible_reads_as_plain_verses() {
    let books = read_books(&module_dir(WORLD_ENGLISH_BIBLE)).unwrap();
    // 66 books plus the deuterocanon, and the front matter.
    assert!(books.len() > 66, "{} books", books.len());
    let verses: Vec<&String> = books.iter().flat_map(|b| &b.verses).collect();
    assert!(verses.len() > 30_000, "{} verses", verses.len());
    assert!(
        verses
            .iter()
            .any(|v| v.starts_with("In the beginning, God created the heavens and the earth."))
    );
    assert!(
        verses.iter().all(|v| !v.contains('<') && !v.contains('>')),
        "markup left in a verse"
    );
    let words: usize = verses.iter().map(|v| v.split_whitespace().count()).sum();
    assert!(words > 900_000, "{words} words");
}

#[test]
fn reina_valera_splits_by_book_and_tokenizes() {
    let corpus = Corpus::from_module(&module_dir(REINA_VALERA_1909)).unwrap();
    assert!(!corpus.validation.is_empty() && !corpus.test.is_empty());
    assert!(corpus.train.len() > 5 * corpus.test.len());
    assert!(
        corpus
            .train
            .iter()
            .any(|v| v.contains("Y dijo Dios: Sea la luz"))
    );
    let tokenizer = Tokenizer::fit(corpus.train.iter().map(String::as_str), 5_000);
    let ids = tokenizer.encode("Y dijo Dios: Sea la luz");
    assert!(
        ids.iter().all(|&id| id > 2),
        "common words are in the vocabulary: {ids:?}"
    );
    assert_eq!(tokenizer.decode(&ids), "y dijo dios: sea la luz");
}
