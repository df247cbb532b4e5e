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

/// Probabilities from log-probabilities, to compare with what prefill and decode return.
fn probabilities(log_probs: &[f32]) -> Vec<f32> {
    log_probs.iter().map(|lp| lp.exp()).collect()
}

/// One decoding step of `batch` (token `tokens[i]` for its `i`-th sequence), each
/// sequence's next-token probabilities checked against a full forward pass over everything
/// it has read (`read`, to which the token is added).
fn decode_and_check(
    lm: &LanguageModel,
    batch: &mut DecodeBatch,
    tokens: &[u32],
    read: &mut HashMap<u64, Vec<u32>>,
    what: &str,
) {
    let probs = lm.decode(batch, tokens).unwrap();
    assert_eq!(probs.len(), tokens.len(), "{what}");
    for ((id, &token), probs) in batch.ids().iter().zip(tokens).zip(probs) {
        let sequence = read.get_mut(id).unwrap();
        sequence.push(token);
        let full = lm.next_token_log_probs(&[sequence]).unwrap();
        assert_close(
            &probs,
            &probabilities(&full[0]),
            &format!("{what} sequence {id}"),
        );
    }
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
                        &probabilities(&lm.next_token_log_probs(&[prompt]).unwrap()[0]),
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
            decode_and_check(
                &lm,
                &mut batch,
                &tokens,
                &mut read,
                &format!("{name} step {step}"),
            );
        }
        // Slots are reused, so the order is the slots', not the order of joining.
        let mut ids = batch.ids().to_vec();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 3]);
    }
}

#[test]
fn free_slots_wait_a_few_steps_for_newcomers_before_they_are_compacted() {
    // Six sequences; four leave, and one step later a newcomer takes the first free slot:
    // nobody moved. After four steps with free slots and no one else joining, the next
    // step compacts them away first, so a newcomer after it comes after the stayers.
    for architecture in &architectures() {
        let lm = model(architecture);
        let name = architecture.name();
        let mut read: HashMap<u64, Vec<u32>> = HashMap::new();
        let prefill = |id: u64, read: &mut HashMap<u64, Vec<u32>>| {
            let prompt: Vec<u32> = (0..1 + id as u32 % 4)
                .map(|i| 1 + (i * 5 + id as u32) % 38)
                .collect();
            let (_, state) = lm.prefill(&prompt).unwrap();
            read.insert(id, prompt);
            (id, state)
        };
        let mut steps = 0u32;
        let mut step = |batch: &mut DecodeBatch, read: &mut HashMap<u64, Vec<u32>>, what: &str| {
            steps += 1;
            let tokens: Vec<u32> = batch
                .ids()
                .iter()
                .map(|&id| 3 + (id as u32 * 7 + steps * 5) % 30)
                .collect();
            decode_and_check(&lm, batch, &tokens, read, &format!("{name} {what}"));
        };
        let mut batch = DecodeBatch::new();
        let joining = (0..6).map(|id| prefill(id, &mut read)).collect();
        batch.join(joining).unwrap();
        step(&mut batch, &mut read, "six");

        batch.retain(|id| id >= 4);
        read.retain(|&id, _| id >= 4);
        step(&mut batch, &mut read, "two left");
        batch.join(vec![prefill(6, &mut read)]).unwrap();
        assert_eq!(batch.ids(), [6, 4, 5], "{name}");
        for n in 0..4 {
            step(&mut batch, &mut read, &format!("loose step {n}"));
        }
        batch.join(vec![prefill(7, &mut read)]).unwrap();
        assert_eq!(
            batch.ids(),
            [6, 4, 5, 7],
            "{name}: compacted before 7 joined"
        );
        step(&mut batch, &mut read, "after compacting");
    }
}

#[test]
fn decoding_goes_round_the_ring_of_keys_and_values_as_sequences_come_and_go() {
    // Context 24: over 60 steps the ring's write column wraps round twice, while sequences
    // leave before the context ends (or at it) and new ones take their slots or new slots.
    let architecture = &architectures()[4];
    let lm = model(architecture);
    let context = lm.context_length().unwrap();
    let mut batch = DecodeBatch::new();
    let mut read: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut next_id = 0u64;
    for step in 0..60u32 {
        let leaving: Vec<u64> = read
            .iter()
            .filter(|(id, s)| s.len() >= context || (s.len() + **id as usize).is_multiple_of(11))
            .map(|(&id, _)| id)
            .collect();
        batch.retain(|id| !leaving.contains(&id));
        leaving.iter().for_each(|id| {
            read.remove(id);
        });
        let mut joining = Vec::new();
        for _ in 0..(if step % 3 == 0 { 2 } else { 0 }) {
            let prompt: Vec<u32> = (0..1 + (next_id as u32 * 5 + step) % 9)
                .map(|i| 1 + (i * 7 + next_id as u32) % 38)
                .collect();
            let (first, state) = lm.prefill(&prompt).unwrap();
            assert_close(
                &first,
                &probabilities(&lm.next_token_log_probs(&[&prompt]).unwrap()[0]),
                "prefill",
            );
            read.insert(next_id, prompt);
            joining.push((next_id, state));
            next_id += 1;
        }
        batch.join(joining).unwrap();
        let tokens: Vec<u32> = batch
            .ids()
            .iter()
            .map(|&id| 3 + (id as u32 * 3 + step * 7) % 30)
            .collect();
        assert_eq!(tokens.len(), read.len(), "step {step}");
        decode_and_check(&lm, &mut batch, &tokens, &mut read, &format!("step {step}"));
    }
    assert!(next_id > 30, "{next_id} sequences came and went");
}

#[test]
fn a_sequence_at_the_end_of_the_context_is_an_error_and_the_others_go_on() {
    let lm = model(&architectures()[4]);
    let context = lm.context_length().unwrap();
    let mut batch = DecodeBatch::new();
    let (_, full) = lm.prefill(&vec![1u32; context]).unwrap();
    let (_, short) = lm.prefill(&[1, 2]).unwrap();
    batch.join(vec![(0, full), (1, short)]).unwrap();
    assert!(lm.decode(&mut batch, &[3, 3]).is_err());
    batch.retain(|id| id == 1);
    assert_eq!(lm.decode(&mut batch, &[3]).unwrap().len(), 1);
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

#[test]
fn lstm_and_gru_stacks_on_the_cpu_kernels_match_burns_ops() {
    let device = Device::flex();
    let architectures = architectures();
    let (recurrent, others) = architectures.split_at(2);
    for other in others {
        assert!(!model(other).uses_cpu_kernels(), "{}", other.name());
    }
    for architecture in recurrent {
        let name = architecture.name();
        let net = architecture.init(&device);
        let ours = LanguageModel::from_net(net.clone(), architecture, &device);
        let burns = LanguageModel::from_net(net, architecture, &device).without_cpu_kernels();
        assert!(
            ours.uses_cpu_kernels() && !burns.uses_cpu_kernels(),
            "{name}"
        );

        let prompts = prompts();
        let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let [a, b] = [&ours, &burns].map(|lm| lm.next_token_log_probs(&refs).unwrap());
        for (a, b) in a.iter().zip(&b) {
            assert_close(a, b, &format!("{name} next-token log-probabilities"));
        }

        let [mut on_kernels, mut on_burn] = [DecodeBatch::new(), DecodeBatch::new()];
        for (lm, batch) in [(&ours, &mut on_kernels), (&burns, &mut on_burn)] {
            let joining = [0, 2]
                .map(|id| (id, lm.prefill(&prompts[id as usize]).unwrap().1))
                .to_vec();
            batch.join(joining).unwrap();
        }
        for (step, tokens) in [[4, 9], [11, 2], [5, 5]].iter().enumerate() {
            let a = ours.decode(&mut on_kernels, tokens).unwrap();
            let b = burns.decode(&mut on_burn, tokens).unwrap();
            for (a, b) in a.iter().zip(&b) {
                assert_close(a, b, &format!("{name} decoding step {step}"));
            }
        }
        assert!(ours.decode(&mut on_kernels, &[4, VOCAB as u32]).is_err());
        assert_eq!(ours.decode(&mut on_kernels, &[4, 9]).unwrap().len(), 2);
    }
}
