//! Turning OSIS verse markup into plain text: footnotes and headings are dropped, every
//! other tag is removed with its text kept, entities are decoded and whitespace collapsed.

/// Elements whose text is not part of the verse.
const DROPPED_ELEMENTS: [&str; 2] = ["note", "title"];

/// The readable text of one verse's markup.
pub fn plain_text(markup: &str) -> String {
    let mut out = String::with_capacity(markup.len() / 2);
    let mut dropped_depth = 0usize;
    // Set after a dropped element: a footnote can sit between two words with no space.
    let mut word_break = false;
    let keep = |out: &mut String, text: &str, word_break: &mut bool| {
        if text.is_empty() {
            return;
        }
        if std::mem::take(word_break) && text.starts_with(char::is_alphanumeric) {
            out.push(' ');
        }
        out.push_str(text);
    };
    let mut rest = markup;
    while let Some(open) = rest.find('<') {
        if dropped_depth == 0 {
            keep(&mut out, &rest[..open], &mut word_break);
        }
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break; // an unterminated tag: the remainder is markup, not text
        };
        let tag = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        let self_closing = tag.ends_with('/');
        let (closing, name) = match tag.strip_prefix('/') {
            Some(name) => (true, name),
            None => (false, tag),
        };
        let name = name.split([' ', '/']).next().unwrap_or("");
        if DROPPED_ELEMENTS.contains(&name) && !self_closing {
            if closing {
                dropped_depth = dropped_depth.saturating_sub(1);
                word_break = dropped_depth == 0;
            } else {
                dropped_depth += 1;
            }
        } else if dropped_depth == 0 && is_break(name) {
            out.push(' ');
        }
    }
    if dropped_depth == 0 {
        keep(&mut out, rest, &mut word_break);
    }
    collapse_whitespace(&decode_entities(&out))
}

/// Tags that separate words even when the markup has no space around them.
fn is_break(name: &str) -> bool {
    matches!(name, "lb" | "l" | "div" | "p" | "lg" | "item" | "list")
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::plain_text;

    #[test]
    fn keeps_words_drops_notes_and_titles() {
        let verse = r#"<title type="main">Heading</title> <w lemma="strong:H0430">In</w> <w>the</w> beginning, <w>God</w><note placement="foot"><reference>1:1 </reference>The <rdg>Hebrew</rdg> word</note> created&amp;made.<lb/>Next"#;
        assert_eq!(
            plain_text(verse),
            "In the beginning, God created&made. Next"
        );
        assert_eq!(plain_text("God<note>n</note><w>created</w>"), "God created");
    }

    #[test]
    fn header_slots_become_empty() {
        assert_eq!(
            plain_text(r#"<chapter n="1" osisID="Gen.1" sID="Gen.1"/>"#),
            ""
        );
        assert_eq!(plain_text("<milestone type=\"x\"/>  "), "");
    }

    #[test]
    fn broken_markup_does_not_panic() {
        for text in ["<", "<w", "</note>x", "<note>never closed", "a < b", "&amp"] {
            let _ = plain_text(text);
        }
        assert_eq!(plain_text("</note>x"), "x");
    }
}
