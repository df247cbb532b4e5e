//! Arbitrary bytes as a generate or next-word body, and arbitrary text as a prompt: a plan
//! within the model's limits or a clear error, never a panic.
#![no_main]

use kiln_server::tasks::text_input::{decode_generate, decode_next_word};
use kiln_server::repository::GenerationConfig;
use kiln_zoo::text::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = GenerationConfig::default();
    match decode_generate(data, &limits, data.first() == Some(&b' ')) {
        Ok(plan) => {
            assert!((1..=limits.max_new_tokens).contains(&plan.max_tokens));
            assert!(plan.sampling.temperature >= 0.0);
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
    if let Ok((_, k)) = decode_next_word(data) {
        assert!(k >= 1);
    }
    let text = String::from_utf8_lossy(data);
    let tokenizer = Tokenizer::fit([text.as_ref()], 50);
    let ids = tokenizer.encode_prompt(&text);
    let _ = tokenizer.decode(&ids);
});
