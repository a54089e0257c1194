//! Held-out splits and mlx-lm-style batches, checked by value.

mod data_support;

use data_support::*;
use engine::batch::Batch;
use engine::config::TrainConfig;
use engine::data::batching::{
    held_out_count, make_batches, padded_width, split_held_out, SplitMix64,
};
use engine::data::{load_dataset, Encoded, Split, SplitSource};

fn example(length: usize, offset: usize, first: u32) -> Encoded {
    Encoded {
        tokens: (first..first + length as u32).collect(),
        offset,
        full_length: length,
    }
}

#[test]
fn batches_are_sorted_grouped_and_padded_like_mlx_lm() {
    let examples = [
        example(5, 2, 100),
        example(40, 0, 200),
        example(3, 1, 300),
        example(33, 10, 400),
        example(70, 0, 500),
    ];
    let batches = make_batches(&examples, 2, 2048);
    let shapes: Vec<(usize, usize)> = batches.iter().map(|b| (b.rows, b.width)).collect();
    // Widths are one more than a multiple of 32: the model reads width - 1.
    assert_eq!(shapes, vec![(2, 33), (2, 65), (1, 97)]);
    let first = &batches[0];
    assert_eq!(first.lengths, vec![3, 5]);
    assert_eq!(first.offsets, vec![1, 2]);
    let mut row0 = vec![300, 301, 302];
    row0.resize(33, 0);
    let mut row1 = vec![100, 101, 102, 103, 104];
    row1.resize(33, 0);
    assert_eq!(first.tokens, [row0, row1].concat());
    assert_eq!(batches[1].lengths, vec![33, 40]);
    assert_eq!(batches[1].offsets, vec![10, 0]);
    assert_eq!(
        &batches[1].tokens[65..65 + 40],
        &(200..240).collect::<Vec<u32>>()[..]
    );
    assert_eq!(
        batches[1].tokens[65 + 40..]
            .iter()
            .filter(|&&t| t != 0)
            .count(),
        0
    );
    assert_eq!(batches[2].lengths, vec![70]);
    // Every example is in exactly one batch (mlx-lm would drop the longest).
    assert_eq!(
        batches.iter().map(|b| b.rows).sum::<usize>(),
        examples.len()
    );
}

#[test]
fn width_is_capped_at_max_seq_length() {
    assert_eq!(padded_width(32, 2048), 33);
    assert_eq!(padded_width(33, 2048), 65);
    assert_eq!(padded_width(64, 64), 64);
    assert_eq!(padded_width(50, 60), 60);
    let batches = make_batches(&[example(90, 80, 1), example(20, 5, 1000)], 4, 64);
    assert_eq!(
        batches,
        vec![Batch {
            tokens: [
                (1000..1020)
                    .chain(std::iter::repeat_n(0, 44))
                    .collect::<Vec<u32>>(),
                (1..65).collect::<Vec<u32>>(),
            ]
            .concat(),
            rows: 2,
            width: 64,
            offsets: vec![5, 64],
            lengths: vec![20, 64],
        }]
    );
}

#[test]
fn ties_keep_file_order() {
    let batches = make_batches(
        &[example(4, 0, 10), example(4, 0, 20), example(4, 0, 30)],
        2,
        100,
    );
    assert_eq!(batches[0].tokens[0], 10);
    assert_eq!(batches[0].tokens[33], 20);
    assert_eq!(batches[1].tokens[0], 30);
}

#[test]
fn held_out_splits_depend_only_on_the_seed() {
    assert_eq!(held_out_count(100, 0.1), 10);
    assert_eq!(held_out_count(10, 0.1), 1);
    assert_eq!(held_out_count(3, 0.1), 1);
    assert_eq!(held_out_count(2, 0.5), 0);
    assert_eq!(held_out_count(100, 0.0), 0);
    assert_eq!(held_out_count(100, 0.4), 25);

    let items: Vec<u32> = (0..20).collect();
    let (train, valid, test) = split_held_out(items.clone(), 0.1, 7);
    assert_eq!((train.len(), valid.len(), test.len()), (16, 2, 2));
    let mut all = [train.clone(), valid.clone(), test.clone()].concat();
    all.sort();
    assert_eq!(all, items);
    assert!(
        train.windows(2).all(|w| w[0] < w[1]),
        "train keeps file order"
    );
    assert_eq!(
        split_held_out(items.clone(), 0.1, 7),
        (train.clone(), valid.clone(), test.clone())
    );
    let other = split_held_out(items, 0.1, 8);
    assert_ne!((other.1, other.2), (valid, test));

    // The generator is SplitMix64 as published (first outputs for seed 0).
    let mut rng = SplitMix64::new(0);
    assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
}

#[test]
fn load_dataset_gives_batches_for_every_split() {
    let line = |q: &str, a: &str| {
        serde_json::json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}).to_string()
    };
    let train: Vec<String> = (0..10).map(|i| line(&"q".repeat(i + 1), "a")).collect();
    let (_dir, path) = dataset_dir(&[
        ("train.jsonl", &train.join("\n")),
        ("valid.jsonl", &line("v", "w")),
        ("test.jsonl", &[line("t", "u"), line("tt", "uu")].join("\n")),
    ]);
    let cfg = TrainConfig {
        batch_size: 4,
        mask_prompt: true,
        ..TrainConfig::default()
    };
    let data = load_dataset(&path, &chatml_bundle(CHATML_TEMPLATE), &cfg).unwrap();
    assert_eq!(
        data.train.iter().map(|b| b.rows).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    assert_eq!(data.valid.len(), 1);
    assert_eq!(data.test[0].rows, 2);
    // Prompt "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n" is
    // 19 + len(q) tokens; "a<|im_end|>\n" adds 3.
    assert_eq!(data.train[0].offsets, vec![20, 21, 22, 23]);
    assert_eq!(data.train[0].lengths, vec![23, 24, 25, 26]);
    assert_eq!(data.train[0].width, 33);
    let report = &data.report;
    assert_eq!(report.split(Split::Train).batches, 3);
    assert_eq!(report.split(Split::Test).examples, 2);
    assert_eq!(
        report.split(Split::Test).source,
        SplitSource::File {
            name: "test.jsonl".into()
        }
    );
    let stats = report.split(Split::Train).tokens.as_ref().unwrap();
    assert_eq!(stats.trained_tokens, 10 * 3);
}
