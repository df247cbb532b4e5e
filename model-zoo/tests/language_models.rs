//! Language models on fresh weights: the serving paths (batched next-token, prefill,
//! batched decoding of sequences that join and leave) agree with a plain forward pass.

use std::collections::HashMap;

use kiln_zoo::Device;
use kiln_zoo::decode_batch::DecodeBatch;
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
fn incremental_decoding_matches_full_forward_as_sequences_join_and_leave() {
    // (sequences that join, sequences that leave) before each step: a longer prompt joins
    // a narrower batch, and rows leave from the front and the middle.
    let schedule: [(&[u64], &[u64]); 6] = [
        (&[0, 1], &[]),
        (&[], &[]),
        (&[2], &[]),
        (&[3], &[0]),
        (&[], &[2]),
        (&[0], &[]),
    ];
    for architecture in architectures() {
        let lm = model(&architecture);
        let name = architecture.name();
        let prompts = prompts();
        // Sequence 0 comes back with a fresh prefill after it left.
        let mut read: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut batch = DecodeBatch::new();
        for (step, (joins, leaves)) in schedule.iter().enumerate() {
            batch.retain(|id| !leaves.contains(&id));
            let joining = joins
                .iter()
                .map(|&id| {
                    let prompt = &prompts[id as usize];
                    let (first, state) = lm.prefill(prompt).unwrap();
                    assert_close(
                        &first,
                        &lm.next_token_log_probs(&[prompt]).unwrap()[0],
                        name,
                    );
                    read.insert(id, prompt.clone());
                    (id, state)
                })
                .collect();
            batch.join(joining).unwrap();
            let tokens: Vec<u32> = batch
                .ids()
                .iter()
                .map(|&id| 3 + (id as u32 * 7 + step as u32 * 5) % 30)
                .collect();
            let log_probs = lm.decode(&mut batch, &tokens).unwrap();
            for ((id, token), log_probs) in batch.ids().iter().zip(tokens).zip(log_probs) {
                let sequence = read.get_mut(id).unwrap();
                sequence.push(token);
                let full = lm.next_token_log_probs(&[sequence]).unwrap();
                assert_close(
                    &log_probs,
                    &full[0],
                    &format!("{name} step {step} row {id}"),
                );
            }
        }
        assert_eq!(batch.ids(), &[1, 3, 0]);
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
    let mut batch = DecodeBatch::new();
    batch.join(vec![(0, state)]).unwrap();
    assert!(lstm.decode(&mut batch, &[3]).is_err());
    assert!(
        transformer.decode(&mut batch, &[3, 4]).is_err(),
        "one token per row"
    );
    let (_, lstm_state) = lstm.prefill(&[1, 2]).unwrap();
    assert!(batch.join(vec![(1, lstm_state)]).is_err());
    assert_eq!(
        batch.ids(),
        &[0],
        "a refused join leaves the batch as it was"
    );
    assert!(transformer.decode(&mut batch, &[3]).is_ok());
}
