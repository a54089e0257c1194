//! Which files make a dataset: a folder with mlx-lm's `train.jsonl`,
//! `valid.jsonl` and `test.jsonl`, or one JSONL file to be split.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::{read_jsonl, DataFormat, FormatKeys, Problem, Record};

/// The three parts of a dataset, in mlx-lm's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.jsonl",
            Split::Valid => "valid.jsonl",
            Split::Test => "test.jsonl",
        }
    }
}

/// Where a split's examples came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitSource {
    /// Its own file.
    File { name: String },
    /// Held out of another file by seed and `split_fraction`.
    HeldOut { from: String },
    /// Neither: training runs without validation, or there is no test.
    #[default]
    Missing,
}

/// The examples of every split as read, before tokenization.
#[derive(Debug, Clone, Default)]
pub struct RawDataset {
    pub train: Vec<Record>,
    pub valid: Vec<Record>,
    pub test: Vec<Record>,
    pub format: Option<DataFormat>,
    /// True when valid and test must be held out of `train` (one file, or a
    /// folder with only `train.jsonl`).
    pub needs_split: bool,
    pub sources: [SplitSource; 3],
}

impl RawDataset {
    pub fn split(&self, split: Split) -> &[Record] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }
}

/// Reads a dataset folder or file, collecting every problem.
pub fn read_dataset(path: &Path, keys: &FormatKeys, problems: &mut Vec<Problem>) -> RawDataset {
    let mut data = RawDataset::default();
    let shown = path.display().to_string();
    let files: Vec<(Split, PathBuf, String)> = if path.is_dir() {
        let train = path.join(Split::Train.file_name());
        if !train.is_file() {
            problems.push(Problem::file(
                Split::Train.file_name(),
                format!(
                    "file not found in {shown} (a dataset folder needs train.jsonl; valid.jsonl and test.jsonl are optional)"
                ),
            ));
            return data;
        }
        Split::ALL
            .iter()
            .map(|&split| {
                (
                    split,
                    path.join(split.file_name()),
                    split.file_name().to_string(),
                )
            })
            .filter(|(_, file, _)| file.exists())
            .collect()
    } else if path.exists() {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        vec![(Split::Train, path.to_path_buf(), name)]
    } else {
        problems.push(Problem::file(&shown, "no such file or folder"));
        return data;
    };

    let mut first: Option<(DataFormat, String)> = None;
    for (split, file, name) in files {
        let contents = read_jsonl(&file, &name, keys, problems);
        if let Some(format) = contents.format {
            match &first {
                None => first = Some((format, name.clone())),
                Some((expected, first_name)) if *expected != format => problems.push(Problem::file(
                    &name,
                    format!("in {format} format but {first_name} is in {expected} format; all files of a dataset share one format"),
                )),
                Some(_) => {}
            }
        }
        data.sources[index(split)] = SplitSource::File { name };
        match split {
            Split::Train => data.train = contents.records,
            Split::Valid => data.valid = contents.records,
            Split::Test => data.test = contents.records,
        }
    }
    data.format = first.map(|(format, _)| format);
    data.needs_split =
        data.sources[1] == SplitSource::Missing && data.sources[2] == SplitSource::Missing;
    data
}

pub(crate) fn index(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Valid => 1,
        Split::Test => 2,
    }
}
