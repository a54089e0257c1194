//! The data pipeline: JSONL datasets in mlx-lm's formats, chat-template
//! rendering, tokenization with prompt masks, splits and padded batches.
//! Plain Rust, no MLX: the server validates uploads and previews examples
//! with it without loading a model.
//!
//! Entry points: [`inspect_dataset`] (formats only, no tokenizer: upload
//! checks), [`load_dataset`] (batches for the trainer), [`preview`] (what
//! each example trains, for the UI).

pub mod batching;
pub mod encode;
pub mod format;
pub mod sample;
pub mod source;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::config::TrainConfig;
use crate::tokenizer::TokenizerBundle;

pub use encode::{
    Encoded, Encoder, ExamplePreview, LengthHistogram, Segment, SegmentKind, TokenStats,
};
pub use format::{DataFormat, Example, FormatKeys, Problem, Record};
pub use source::{Split, SplitSource};

/// What is known about one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    pub split: Split,
    pub source: SplitSource,
    pub examples: usize,
    /// Filled once the dataset is tokenized.
    pub tokens: Option<TokenStats>,
    /// Filled once batches are made.
    pub batches: usize,
}

/// Everything a person needs to know about a dataset: where each split came
/// from, its format, counts, token figures, and every problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetReport {
    pub format: Option<DataFormat>,
    /// Train, valid, test, in that order.
    pub splits: Vec<SplitReport>,
    pub problems: Vec<Problem>,
}

impl DatasetReport {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn split(&self, split: Split) -> &SplitReport {
        &self.splits[source::index(split)]
    }
}

impl fmt::Display for DatasetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.format {
            Some(format) => write!(f, "{format} dataset:")?,
            None => write!(f, "dataset:")?,
        }
        for split in &self.splits {
            write!(f, " {:?} {}", split.split, split.examples)?;
        }
        for problem in &self.problems {
            write!(f, "\n{problem}")?;
        }
        Ok(())
    }
}

/// A dataset that cannot be used, with the report that says why.
#[derive(Debug, Clone)]
pub struct DataError(pub Box<DatasetReport>);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems = &self.0.problems;
        write!(
            f,
            "the dataset has {} problem{}:",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        )?;
        for problem in problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DataError {}

/// Batches for the trainer and the report.
#[derive(Debug, Clone)]
pub struct PreparedData {
    pub train: Vec<Batch>,
    pub valid: Vec<Batch>,
    pub test: Vec<Batch>,
    pub report: DatasetReport,
}

/// The records of each split after a held-out split where one is needed.
struct Splits {
    records: [Vec<Record>; 3],
    sources: [SplitSource; 3],
    format: Option<DataFormat>,
}

fn read_splits(
    path: &Path,
    keys: &FormatKeys,
    cfg: &TrainConfig,
    problems: &mut Vec<Problem>,
) -> Splits {
    let raw = source::read_dataset(path, keys, problems);
    let mut sources = raw.sources.clone();
    let records = if raw.needs_split {
        let from = match &raw.sources[0] {
            SplitSource::File { name } => name.clone(),
            _ => String::new(),
        };
        let (train, valid, test) =
            batching::split_held_out(raw.train, cfg.split_fraction, cfg.seed);
        for (i, part) in [&valid, &test].into_iter().enumerate() {
            if !part.is_empty() {
                sources[i + 1] = SplitSource::HeldOut { from: from.clone() };
            }
        }
        [train, valid, test]
    } else {
        [raw.train, raw.valid, raw.test]
    };
    Splits {
        records,
        sources,
        format: raw.format,
    }
}

/// The records of one split as training sees it: a single file's valid
/// and test are held out of it by `cfg.split_fraction` and `cfg.seed`.
/// Problems found on the way are returned beside them.
pub fn split_records(
    path: &Path,
    keys: &FormatKeys,
    cfg: &TrainConfig,
    split: Split,
) -> (Vec<Record>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut splits = read_splits(path, keys, cfg, &mut problems);
    let index = Split::ALL.iter().position(|&s| s == split).unwrap_or(0);
    (std::mem::take(&mut splits.records[index]), problems)
}

fn report_of(splits: &Splits, problems: Vec<Problem>) -> DatasetReport {
    DatasetReport {
        format: splits.format,
        splits: Split::ALL
            .iter()
            .enumerate()
            .map(|(i, &split)| SplitReport {
                split,
                source: splits.sources[i].clone(),
                examples: splits.records[i].len(),
                tokens: None,
                batches: 0,
            })
            .collect(),
        problems,
    }
}

/// Checks a dataset's files and formats without a tokenizer (what the
/// server does on upload). The split counts include the held-out split that
/// training would make.
pub fn inspect_dataset(path: &Path, keys: &FormatKeys, cfg: &TrainConfig) -> DatasetReport {
    let mut problems = Vec::new();
    let splits = read_splits(path, keys, cfg, &mut problems);
    report_of(&splits, problems)
}

/// Reads, checks, tokenizes and batches a dataset folder or file with
/// mlx-lm's default key names.
pub fn load_dataset(
    dir_or_file: &Path,
    tokenizer: &TokenizerBundle,
    cfg: &TrainConfig,
) -> Result<PreparedData, DataError> {
    load_dataset_with_keys(dir_or_file, &FormatKeys::default(), tokenizer, cfg)
}

/// [`load_dataset`] with custom key names.
pub fn load_dataset_with_keys(
    dir_or_file: &Path,
    keys: &FormatKeys,
    tokenizer: &TokenizerBundle,
    cfg: &TrainConfig,
) -> Result<PreparedData, DataError> {
    let (mut report, encoded, _) = tokenize(dir_or_file, keys, tokenizer, cfg, None, &mut |_| {});
    if !report.problems.is_empty() {
        return Err(DataError(Box::new(report)));
    }
    let [train, valid, test] = encoded
        .map(|examples| batching::make_batches(&examples, cfg.batch_size, cfg.max_seq_length));
    for (i, batches) in [&train, &valid, &test].into_iter().enumerate() {
        report.splits[i].batches = batches.len();
    }
    Ok(PreparedData {
        train,
        valid,
        test,
        report,
    })
}

/// A dataset checked with a model's tokenizer: the full report (token
/// figures, histograms, truncation, batch counts, every problem) and what
/// the first examples of one split train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    pub report: DatasetReport,
    pub previews: Vec<ExamplePreview>,
}

/// Checks a dataset against a model without building batches: what the
/// server shows after an upload once a model is chosen. Never fails; any
/// trouble is in `report.problems`.
pub fn inspect_with_tokenizer(
    dir_or_file: &Path,
    keys: &FormatKeys,
    tokenizer: &TokenizerBundle,
    cfg: &TrainConfig,
    preview_split: Split,
    preview_limit: usize,
) -> Inspection {
    inspect_with_progress(
        dir_or_file,
        keys,
        tokenizer,
        cfg,
        (preview_split, preview_limit),
        &mut |_| {},
    )
}

/// How far an inspection's tokenization is: examples encoded of all read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub encoded: usize,
    pub total: usize,
}

/// Examples encoded between two progress reports: often enough for a bar
/// that moves, rarely enough to cost nothing beside the tokenizer.
const PROGRESS_EVERY: usize = 1000;

/// [`inspect_with_tokenizer`], telling `on_progress` how far it is (once
/// the files are read, every [`PROGRESS_EVERY`] examples, and at the end).
pub fn inspect_with_progress(
    dir_or_file: &Path,
    keys: &FormatKeys,
    tokenizer: &TokenizerBundle,
    cfg: &TrainConfig,
    (preview_split, preview_limit): (Split, usize),
    on_progress: &mut dyn FnMut(Progress),
) -> Inspection {
    let (mut report, encoded, previews) = tokenize(
        dir_or_file,
        keys,
        tokenizer,
        cfg,
        Some((preview_split, preview_limit)),
        on_progress,
    );
    for (split, encoded) in report.splits.iter_mut().zip(&encoded) {
        split.batches = encoded.len().div_ceil(cfg.batch_size.max(1));
    }
    Inspection { report, previews }
}

/// What the first `limit` examples of a split train, for the UI. Fails
/// only when nothing can be shown.
pub fn preview(
    dir_or_file: &Path,
    split: Split,
    limit: usize,
    tokenizer: &TokenizerBundle,
    cfg: &TrainConfig,
) -> Result<Vec<ExamplePreview>, DataError> {
    let inspection = inspect_with_tokenizer(
        dir_or_file,
        &FormatKeys::default(),
        tokenizer,
        cfg,
        split,
        limit,
    );
    if inspection.previews.is_empty() && !inspection.report.problems.is_empty() {
        return Err(DataError(Box::new(inspection.report)));
    }
    Ok(inspection.previews)
}

/// Reads and tokenizes every split; the report carries token figures and
/// every problem.
fn tokenize(
    dir_or_file: &Path,
    keys: &FormatKeys,
    tokenizer: &TokenizerBundle,
    cfg: &TrainConfig,
    preview: Option<(Split, usize)>,
    on_progress: &mut dyn FnMut(Progress),
) -> (DatasetReport, [Vec<Encoded>; 3], Vec<ExamplePreview>) {
    let mut problems = Vec::new();
    let splits = read_splits(dir_or_file, keys, cfg, &mut problems);
    let (encoded, previews) =
        encode_splits(&splits, tokenizer, cfg, preview, &mut problems, on_progress);
    let mut report = report_of(&splits, problems);
    for (split, encoded) in report.splits.iter_mut().zip(&encoded) {
        if split.source != SplitSource::Missing {
            split.tokens = Some(TokenStats::new(encoded));
        }
    }
    if report.split(Split::Train).examples == 0 && report.problems.is_empty() {
        report.problems.push(Problem::file(
            Split::Train.file_name(),
            "no training examples",
        ));
    }
    (report, encoded, previews)
}

fn encode_splits(
    splits: &Splits,
    tokenizer: &TokenizerBundle,
    cfg: &TrainConfig,
    preview: Option<(Split, usize)>,
    problems: &mut Vec<Problem>,
    on_progress: &mut dyn FnMut(Progress),
) -> ([Vec<Encoded>; 3], Vec<ExamplePreview>) {
    let empty = || ([Vec::new(), Vec::new(), Vec::new()], Vec::new());
    let encoder = match Encoder::new(tokenizer, cfg.mask_prompt, cfg.max_seq_length) {
        Ok(encoder) => encoder,
        Err(message) => {
            problems.push(Problem::file("tokenizer", message));
            return empty();
        }
    };
    if let Some(problem) = format_problem(splits, &encoder, cfg) {
        problems.push(problem);
        return empty();
    }
    let mut failures = Vec::new();
    let mut previews = Vec::new();
    let mut encoded: [Vec<Encoded>; 3] = Default::default();
    let mut progress = Progress {
        encoded: 0,
        total: splits.records.iter().map(Vec::len).sum(),
    };
    on_progress(progress);
    for (split, records) in Split::ALL.iter().zip(&splits.records) {
        let shown = match preview {
            Some((wanted, limit)) if wanted == *split => limit,
            _ => 0,
        };
        for (i, record) in records.iter().enumerate() {
            let result = if i < shown {
                encoder.encode_text(record).map(|detail| {
                    previews.push(ExamplePreview::from_encoded(record, &detail));
                    detail.encoded
                })
            } else {
                encoder.encode(record)
            };
            match result {
                Ok(example) => encoded[source::index(*split)].push(example),
                Err(problem) => failures.push(problem),
            }
            progress.encoded += 1;
            if progress.encoded.is_multiple_of(PROGRESS_EVERY) {
                on_progress(progress);
            }
        }
    }
    on_progress(progress);
    // A held-out split scatters one file's lines over three splits; list
    // them back in file order.
    failures.sort_by_key(|p| (file_rank(&p.file), p.line));
    problems.extend(failures);
    (encoded, previews)
}

fn file_rank(file: &str) -> usize {
    Split::ALL
        .iter()
        .position(|split| split.file_name() == file)
        .unwrap_or(Split::ALL.len())
}

/// Problems that concern the whole dataset rather than a line: reported
/// once instead of on every example.
fn format_problem(splits: &Splits, encoder: &Encoder, cfg: &TrainConfig) -> Option<Problem> {
    let first = splits.records.iter().flatten().next()?;
    match first.example.format() {
        DataFormat::Chat if !encoder.has_chat_template() => Some(Problem::file(
            &first.file,
            "chat examples need a chat template and the model's tokenizer has none; use the completions or text format",
        )),
        DataFormat::Text if cfg.mask_prompt => Some(Problem::file(
            &first.file,
            "mask_prompt is on but text examples have no prompt to mask; turn it off or use the chat or completions format",
        )),
        _ => None,
    }
}
