//! Reader for SWORD "zText" Bible modules (as packaged by Debian's `sword-text-*`).
//!
//! A testament is three files: `.bzz` holds zlib-compressed blocks (one per book when the
//! module's `BlockType=BOOK`), `.bzs` indexes those blocks (offset, compressed size,
//! uncompressed size: three little-endian u32) and `.bzv` indexes every verse slot (block,
//! offset inside the uncompressed block: u32 each, then a u16 length). Slots include the
//! module, book and chapter headers; their text is markup that [`super::osis`] strips.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::ZlibDecoder;

use super::osis::plain_text;
use crate::error::{Result, ZooError};

/// Where Debian installs SWORD modules.
pub const DEBIAN_MODULES_DIR: &str = "/usr/share/sword/modules/texts/ztext";

/// The World English Bible (Debian `sword-text-web`).
pub const WORLD_ENGLISH_BIBLE: &str = "engWEB2015eb";
/// The Reina-Valera 1909 (Debian `sword-text-sparv`).
pub const REINA_VALERA_1909: &str = "spaRV1909eb";

/// Largest uncompressed block accepted: the biggest real book is a few MB of markup.
const MAX_BLOCK_BYTES: usize = 64 << 20;

/// One book: its plain-text verses in order (headers and empty slots dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Book {
    /// Position of the book in the module, counting the Old Testament's blocks first.
    pub ordinal: usize,
    pub verses: Vec<String>,
}

/// The folder of an installed module, e.g. `module_dir("engWEB2015eb")`.
pub fn module_dir(name: &str) -> PathBuf {
    Path::new(DEBIAN_MODULES_DIR).join(name)
}

/// Every book of the module in `dir`, Old Testament (`ot.*`) then New Testament (`nt.*`);
/// a missing testament is skipped, a module with neither is an error.
pub fn read_books(dir: &Path) -> Result<Vec<Book>> {
    let mut books = Vec::new();
    let mut found = false;
    for testament in ["ot", "nt"] {
        if !dir.join(format!("{testament}.bzv")).exists() {
            continue;
        }
        found = true;
        let start = books.len();
        for (i, verses) in read_testament(dir, testament)?.into_iter().enumerate() {
            if !verses.is_empty() {
                books.push(Book {
                    ordinal: start + i,
                    verses,
                });
            }
        }
    }
    if !found {
        return Err(ZooError::Format {
            path: dir.to_path_buf(),
            format: "SWORD zText module",
            reason: "no ot.bzv or nt.bzv index".into(),
        });
    }
    Ok(books)
}

/// The verses of one testament, grouped by block.
fn read_testament(dir: &Path, testament: &str) -> Result<Vec<Vec<String>>> {
    let read = |ext: &str| {
        let path = dir.join(format!("{testament}.{ext}"));
        std::fs::read(&path).map_err(|e| ZooError::io(&path, e))
    };
    let bad = |ext: &str, reason: String| ZooError::Format {
        path: dir.join(format!("{testament}.{ext}")),
        format: "SWORD zText",
        reason,
    };
    let (bzs, bzv, bzz) = (read("bzs")?, read("bzv")?, read("bzz")?);
    if bzs.len() % 12 != 0 {
        return Err(bad(
            "bzs",
            format!("length {} is not a multiple of 12", bzs.len()),
        ));
    }
    if bzv.len() % 10 != 0 {
        return Err(bad(
            "bzv",
            format!("length {} is not a multiple of 10", bzv.len()),
        ));
    }
    let blocks = bzs
        .chunks_exact(12)
        .enumerate()
        .map(|(i, entry)| {
            let (offset, size, expected) = (u32_at(entry, 0), u32_at(entry, 4), u32_at(entry, 8));
            let compressed = bzz
                .get(offset as usize..offset as usize + size as usize)
                .ok_or_else(|| bad("bzz", format!("block {i} lies past the end of the file")))?;
            inflate(compressed, expected as usize)
                .map_err(|reason| bad("bzz", format!("block {i}: {reason}")))
        })
        .collect::<Result<Vec<Vec<u8>>>>()?;

    let mut verses: Vec<Vec<String>> = vec![Vec::new(); blocks.len()];
    for (slot, entry) in bzv.chunks_exact(10).enumerate() {
        let (block, start) = (u32_at(entry, 0) as usize, u32_at(entry, 4) as usize);
        let len = u16::from_le_bytes([entry[8], entry[9]]) as usize;
        if len == 0 {
            continue;
        }
        let raw = blocks
            .get(block)
            .and_then(|b| b.get(start..start + len))
            .ok_or_else(|| bad("bzv", format!("verse slot {slot} points outside its block")))?;
        let text = plain_text(&String::from_utf8_lossy(raw));
        if !text.is_empty() {
            verses[block].push(text);
        }
    }
    Ok(verses)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn inflate(compressed: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    if expected > MAX_BLOCK_BYTES {
        return Err(format!(
            "claims {expected} bytes, over the {MAX_BLOCK_BYTES} limit"
        ));
    }
    let mut out = Vec::with_capacity(expected);
    ZlibDecoder::new(compressed)
        .take(MAX_BLOCK_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not zlib data: {e}"))?;
    if out.len() > MAX_BLOCK_BYTES {
        return Err(format!("inflates past the {MAX_BLOCK_BYTES} byte limit"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::ZlibEncoder;
    use std::io::Write;

    /// Writes a one-testament module whose blocks hold the given verse markup.
    fn write_module(dir: &Path, books: &[&[&str]]) {
        let (mut bzs, mut bzv, mut bzz) = (Vec::new(), Vec::new(), Vec::new());
        bzv.extend([0u8; 10]); // the module header slot is empty
        for (b, verses) in books.iter().enumerate() {
            let mut block = Vec::new();
            for v in *verses {
                bzv.extend((b as u32).to_le_bytes());
                bzv.extend((block.len() as u32).to_le_bytes());
                bzv.extend((v.len() as u16).to_le_bytes());
                block.extend(v.as_bytes());
            }
            let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
            enc.write_all(&block).unwrap();
            let compressed = enc.finish().unwrap();
            bzs.extend((bzz.len() as u32).to_le_bytes());
            bzs.extend((compressed.len() as u32).to_le_bytes());
            bzs.extend((block.len() as u32).to_le_bytes());
            bzz.extend(compressed);
        }
        std::fs::write(dir.join("ot.bzs"), bzs).unwrap();
        std::fs::write(dir.join("ot.bzv"), bzv).unwrap();
        std::fs::write(dir.join("ot.bzz"), bzz).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-sword-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_verses_per_book_and_strips_markup() {
        let dir = temp_dir("ok");
        write_module(
            &dir,
            &[
                &[
                    "<chapter n=\"1\"/>",
                    "<w lemma=\"x\">In</w> the beginning<note>a footnote</note>.",
                ],
                &["Jesus wept."],
            ],
        );
        let books = read_books(&dir).unwrap();
        assert_eq!(
            books,
            vec![
                Book {
                    ordinal: 0,
                    verses: vec!["In the beginning.".into()]
                },
                Book {
                    ordinal: 1,
                    verses: vec!["Jesus wept.".into()]
                },
            ]
        );
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let dir = temp_dir("bad");
        write_module(&dir, &[&["text"]]);
        let mut bzv = std::fs::read(dir.join("ot.bzv")).unwrap();
        bzv[14..18].copy_from_slice(&9999u32.to_le_bytes()); // verse offset past the block
        std::fs::write(dir.join("ot.bzv"), &bzv).unwrap();
        assert!(
            read_books(&dir)
                .unwrap_err()
                .to_string()
                .contains("outside its block")
        );

        std::fs::write(dir.join("ot.bzz"), b"not zlib").unwrap();
        assert!(read_books(&dir).is_err());
        std::fs::write(dir.join("ot.bzs"), [0u8; 5]).unwrap();
        assert!(read_books(&dir).is_err());
        assert!(read_books(&dir.join("missing")).is_err());
    }
}
