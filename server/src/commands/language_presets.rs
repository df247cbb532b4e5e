//! The language models Kiln ships: which Bible module each learns from, its network and its
//! training schedule. `kiln train <name>` trains one; `kiln eval <name>` scores it.

use kiln_zoo::language_model::{LanguageModelArchitecture, RecurrentSpec};
use kiln_zoo::models::elman::ElmanActivation;
use kiln_zoo::models::transformer_lm::TransformerLmConfig;
use kiln_zoo::text::sword::{REINA_VALERA_1909, WORLD_ENGLISH_BIBLE};

/// Words kept in each vocabulary (the rest become `<unk>`).
pub const VOCAB_SIZE: usize = 5_000;
const D_MODEL: usize = 128;
/// Prompt plus generated tokens the Transformer attends over.
pub const TRANSFORMER_CONTEXT: usize = 128;

const LSTM_EPOCHS: usize = 6;

/// One shipped language model.
#[derive(Debug, Clone)]
pub struct LanguagePreset {
    pub name: &'static str,
    /// SWORD module (Debian package `sword-text-web` or `sword-text-sparv`).
    pub corpus: &'static str,
    pub language: &'static str,
    pub architecture: LanguageModelArchitecture,
    pub epochs: usize,
    pub learning_rate: f64,
    /// Tokens per training window.
    pub window: usize,
}

fn recurrent(layers: usize, activation: Option<ElmanActivation>) -> RecurrentSpec {
    RecurrentSpec {
        vocab_size: VOCAB_SIZE,
        d_model: D_MODEL,
        layers,
        activation,
    }
}

pub fn presets() -> Vec<LanguagePreset> {
    let english = |name, architecture, learning_rate, window| LanguagePreset {
        name,
        corpus: WORLD_ENGLISH_BIBLE,
        language: "en",
        architecture,
        epochs: 3,
        learning_rate,
        window,
    };
    vec![
        // The LSTMs learn slower than the GRU on this corpus: after 3 epochs they were
        // still far from converged (validation perplexity falling ~7 per epoch).
        LanguagePreset {
            epochs: LSTM_EPOCHS,
            ..english(
                "lstm-web-en",
                LanguageModelArchitecture::Lstm(recurrent(2, None)),
                3e-3,
                32,
            )
        },
        english(
            "gru-web-en",
            LanguageModelArchitecture::Gru(recurrent(2, None)),
            3e-3,
            32,
        ),
        english(
            "rnn-web-en",
            LanguageModelArchitecture::Rnn(recurrent(1, Some(ElmanActivation::Tanh))),
            2e-3,
            32,
        ),
        english(
            "transformer-web-en",
            LanguageModelArchitecture::Transformer(TransformerLmConfig::new(
                VOCAB_SIZE,
                D_MODEL,
                2,
                4,
                4 * D_MODEL,
                TRANSFORMER_CONTEXT,
            )),
            2e-3,
            64,
        ),
        LanguagePreset {
            name: "lstm-rv-es",
            corpus: REINA_VALERA_1909,
            language: "es",
            architecture: LanguageModelArchitecture::Lstm(recurrent(2, None)),
            epochs: LSTM_EPOCHS,
            learning_rate: 3e-3,
            window: 32,
        },
    ]
}

pub fn preset(name: &str) -> Option<LanguagePreset> {
    presets().into_iter().find(|p| p.name == name)
}

pub fn names() -> Vec<&'static str> {
    presets().iter().map(|p| p.name).collect()
}
