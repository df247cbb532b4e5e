//! Language models on fresh weights: the serving paths (batched next-token, prefill,
//! batched decoding with per-sequence state) agree with a plain forward pass.

use kiln_zoo::Device;
use kiln_zoo::language_model::{LanguageModel, LanguageModelArchitecture, RecurrentSpec};
use kiln_zoo::models::elman::ElmanActivation;
use kiln_zoo::models::transformer_lm::TransformerLmConfig;

const VOCAB: usize = 40;

fn architectures() -> Vec<LanguageModelArchitecture> {
    let spec = |activation| RecurrentSpec {
        vocab_size: VOCAB,
        d_model: 16,
        layers: 2,
        activation,
    };
    vec![
        LanguageModelArchitecture::Lstm(spec(None)),
        LanguageModelArchitecture::Gru(spec(None)),
        LanguageModelArchitecture::Rnn(spec(Some(ElmanActivation::Tanh))),
        LanguageModelArchitecture::Rnn(spec(Some(ElmanActivation::ReluIdentity))),
        LanguageModelArchitecture::Transformer(TransformerLmConfig::new(VOCAB, 16, 2, 4, 32, 24)),
    ]
}

fn model(architecture: &LanguageModelArchitecture) -> LanguageModel {
    let device = Device::flex();
    LanguageModel::from_net(architecture.init(&device), architecture, &device)
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "{what}: differs by {worst}");
}

fn prompts() -> Vec<Vec<u32>> {
    vec![
        vec![1, 5, 9, 12, 3],
        vec![1, 7],
        vec![1, 30, 31, 32, 33, 34, 35, 36, 20],
        vec![1],
    ]
}

#[test]
fn next_token_distribution_does_not_depend_on_batch_mates() {
    for architecture in architectures() {
        let lm = model(&architecture);
        let prompts = prompts();
        let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let batched = lm.next_token_log_probs(&refs).unwrap();
        for (prompt, together) in refs.iter().zip(&batched) {
            let alone = lm.next_token_log_probs(&[prompt]).unwrap();
            assert_close(&alone[0], together, architecture.name());
            let total: f32 = together.iter().map(|lp| lp.exp()).sum();
            assert!((total - 1.0).abs() < 1e-3, "probabilities sum to {total}");
        }
    }
}

#[test]
fn incremental_decoding_matches_full_forward() {
    for architecture in architectures() {
        let lm = model(&architecture);
        let prompts = prompts();
        // Prefill each prompt, then feed three more tokens to all of them in one batch.
        let mut states = Vec::new();
        let mut sequences = prompts.clone();
        for p in &prompts {
            let (first, state) = lm.prefill(p).unwrap();
            assert_close(
                &first,
                &lm.next_token_log_probs(&[p]).unwrap()[0],
                "prefill",
            );
            states.push(state);
        }
        for step in 0..3u32 {
            let tokens: Vec<u32> = (0..prompts.len() as u32)
                .map(|i| 3 + (i * 7 + step * 5) % 30)
                .collect();
            let (log_probs, next) = lm.decode(&tokens, states).unwrap();
            states = next;
            for (i, t) in tokens.iter().enumerate() {
                sequences[i].push(*t);
                let full = lm.next_token_log_probs(&[&sequences[i]]).unwrap();
                assert_close(
                    &log_probs[i],
                    &full[0],
                    &format!("{} step {step}", architecture.name()),
                );
            }
        }
    }
}

#[test]
fn invalid_sequences_are_errors() {
    let transformer = model(&architectures()[4]);
    assert!(transformer.next_token_log_probs(&[&[]]).is_err());
    assert!(
        transformer
            .next_token_log_probs(&[&[VOCAB as u32]])
            .is_err()
    );
    let too_long = vec![1u32; 25];
    assert!(transformer.prefill(&too_long).is_err());
    let lstm = model(&architectures()[0]);
    let (_, state) = transformer.prefill(&[1, 2]).unwrap();
    assert!(lstm.decode(&[3], vec![state]).is_err());
}
