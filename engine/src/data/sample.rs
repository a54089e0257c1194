//! The sample dataset the product ships (`engine/assets/sample-dataset/`),
//! and the function that generates it.
//!
//! It teaches one behaviour a small model picks up in a few minutes of CPU
//! LoRA training and that anyone can check by eye or by code: every answer
//! starts with [`GREETING`] and ends with [`SIGN_OFF`], around a short,
//! correct answer to an everyday question (sums, capitals, opposites,
//! plurals...). A base SmolLM2-135M-Instruct never answers that way, so the
//! change is obvious after training; [`follows_style`] checks it.
//!
//! The generator is deterministic (fixed tables, a seeded shuffle), and a
//! test keeps the committed files equal to its output.

use crate::chat_template::{DAYS, MONTHS};
use std::io;
use std::path::Path;

use super::batching::SplitMix64;

/// How every trained answer starts.
pub const GREETING: &str = "Ahoy!";
/// How every trained answer ends.
pub const SIGN_OFF: &str = "Yo-ho-ho!";

pub const TRAIN_EXAMPLES: usize = 300;
pub const VALID_EXAMPLES: usize = 40;
pub const TEST_EXAMPLES: usize = 40;

const SEED: u64 = 2024;

/// The committed files, for shipping inside the binary.
pub const TRAIN_JSONL: &str = include_str!("../../assets/sample-dataset/train.jsonl");
pub const VALID_JSONL: &str = include_str!("../../assets/sample-dataset/valid.jsonl");
pub const TEST_JSONL: &str = include_str!("../../assets/sample-dataset/test.jsonl");

/// The three files' contents (JSONL, one chat example a line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleDataset {
    pub train: String,
    pub valid: String,
    pub test: String,
}

/// Whether a model's answer has the trained style.
pub fn follows_style(answer: &str) -> bool {
    answer
        .trim()
        .strip_prefix(GREETING)
        .and_then(|rest| rest.strip_suffix(SIGN_OFF))
        .is_some_and(|middle| !middle.trim().is_empty())
}

/// Builds the dataset: every question the tables give, shuffled by a fixed
/// seed, cut into train, valid and test (no question is in two of them).
pub fn generate() -> SampleDataset {
    let mut pairs = questions();
    SplitMix64::new(SEED).shuffle(&mut pairs);
    let lines: Vec<String> = pairs
        .iter()
        .take(TRAIN_EXAMPLES + VALID_EXAMPLES + TEST_EXAMPLES)
        .map(|(question, answer)| chat_line(question, answer))
        .collect();
    let join = |lines: &[String]| {
        lines
            .iter()
            .map(|line| format!("{line}\n"))
            .collect::<String>()
    };
    let (train, rest) = lines.split_at(TRAIN_EXAMPLES);
    let (valid, test) = rest.split_at(VALID_EXAMPLES);
    SampleDataset {
        train: join(train),
        valid: join(valid),
        test: join(&test[..TEST_EXAMPLES.min(test.len())]),
    }
}

/// Writes `train.jsonl`, `valid.jsonl` and `test.jsonl` into `dir`
/// (created if needed).
pub fn write_sample_dataset(dir: &Path) -> io::Result<()> {
    let data = generate();
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("train.jsonl"), data.train)?;
    std::fs::write(dir.join("valid.jsonl"), data.valid)?;
    std::fs::write(dir.join("test.jsonl"), data.test)?;
    Ok(())
}

/// One line, written by hand so the key order (`role` before `content`, as
/// people write it) does not depend on serde_json's map features.
fn chat_line(question: &str, answer: &str) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    format!(
        "{{\"messages\": [{{\"role\": \"user\", \"content\": {}}}, {{\"role\": \"assistant\", \"content\": {}}}]}}",
        quote(question),
        quote(&format!("{GREETING} {answer} {SIGN_OFF}"))
    )
}

const CAPITALS: [(&str, &str); 40] = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("India", "New Delhi"),
    ("Canada", "Ottawa"),
    ("Mexico", "Mexico City"),
    ("Brazil", "Brasília"),
    ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"),
    ("Morocco", "Rabat"),
    ("Australia", "Canberra"),
    ("New Zealand", "Wellington"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Ireland", "Dublin"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Greece", "Athens"),
    ("Turkey", "Ankara"),
    ("Russia", "Moscow"),
    ("Ukraine", "Kyiv"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("South Korea", "Seoul"),
    ("Indonesia", "Jakarta"),
    ("the Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"),
    ("Switzerland", "Bern"),
    ("Hungary", "Budapest"),
    ("Cuba", "Havana"),
];

const OPPOSITES: [(&str, &str); 24] = [
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("up", "down"),
    ("day", "night"),
    ("happy", "sad"),
    ("open", "closed"),
    ("full", "empty"),
    ("light", "dark"),
    ("early", "late"),
    ("hard", "soft"),
    ("wet", "dry"),
    ("young", "old"),
    ("tall", "short"),
    ("loud", "quiet"),
    ("rich", "poor"),
    ("thick", "thin"),
    ("strong", "weak"),
    ("clean", "dirty"),
    ("inside", "outside"),
    ("first", "last"),
    ("push", "pull"),
    ("buy", "sell"),
    ("win", "lose"),
];

const PLURALS: [(&str, &str); 16] = [
    ("mouse", "mice"),
    ("child", "children"),
    ("foot", "feet"),
    ("tooth", "teeth"),
    ("goose", "geese"),
    ("man", "men"),
    ("woman", "women"),
    ("person", "people"),
    ("leaf", "leaves"),
    ("knife", "knives"),
    ("box", "boxes"),
    ("city", "cities"),
    ("fish", "fish"),
    ("sheep", "sheep"),
    ("cactus", "cacti"),
    ("wolf", "wolves"),
];

const SOUNDS: [(&str, &str); 12] = [
    ("cow", "moo"),
    ("dog", "woof"),
    ("cat", "meow"),
    ("duck", "quack"),
    ("sheep", "baa"),
    ("pig", "oink"),
    ("horse", "neigh"),
    ("owl", "hoot"),
    ("frog", "ribbit"),
    ("lion", "roar"),
    ("snake", "hiss"),
    ("bee", "buzz"),
];

const COLORS: [(&str, &str); 12] = [
    ("a banana", "yellow"),
    ("grass", "green"),
    ("snow", "white"),
    ("coal", "black"),
    ("a ripe tomato", "red"),
    ("the sky on a clear day", "blue"),
    ("a carrot", "orange"),
    ("an eggplant", "purple"),
    ("a lemon", "yellow"),
    ("milk", "white"),
    ("a strawberry", "red"),
    ("a pumpkin", "orange"),
];

const WORDS: [&str; 24] = [
    "apple", "house", "river", "garden", "pencil", "window", "orange", "bread", "cloud", "music",
    "table", "chair", "planet", "summer", "forest", "candle", "bottle", "rabbit", "island",
    "kitchen", "mountain", "sun", "tree", "ocean",
];

/// Every (question, answer) the tables give, in a fixed order; phrasings
/// rotate so the model learns the style, not one sentence.
fn questions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, (country, capital)) in CAPITALS.iter().enumerate() {
        let question = match i % 3 {
            0 => format!("What is the capital of {country}?"),
            1 => format!("Which city is the capital of {country}?"),
            _ => format!("Name the capital city of {country}."),
        };
        out.push((question, format!("The capital of {country} is {capital}.")));
    }
    for a in 2..=12u32 {
        for b in [2u32, 3, 4, 5, 6, 7, 8, 9] {
            let (question, answer) = match (a + b) % 3 {
                0 => (
                    format!("What is {a} plus {b}?"),
                    format!("{a} plus {b} is {}.", a + b),
                ),
                1 => (
                    format!("How much is {a} times {b}?"),
                    format!("{a} times {b} is {}.", a * b),
                ),
                _ => (
                    format!("What is {} minus {b}?", a + b + 4),
                    format!("{} minus {b} is {}.", a + b + 4, a + 4),
                ),
            };
            out.push((question, answer));
        }
    }
    for (i, (word, opposite)) in OPPOSITES.iter().enumerate() {
        let question = if i % 2 == 0 {
            format!("What is the opposite of \"{word}\"?")
        } else {
            format!("Give me the opposite of the word {word}.")
        };
        out.push((question, format!("The opposite of {word} is {opposite}.")));
    }
    for (word, plural) in PLURALS {
        out.push((
            format!("What is the plural of \"{word}\"?"),
            format!("The plural of {word} is {plural}."),
        ));
    }
    for (i, (animal, sound)) in SOUNDS.iter().enumerate() {
        let question = if i % 2 == 0 {
            format!("What sound does a {animal} make?")
        } else {
            format!("What does a {animal} say?")
        };
        out.push((question, format!("A {animal} says {sound}.")));
    }
    for (thing, color) in COLORS {
        out.push((
            format!("What color is {thing}?"),
            format!("{} is {color}.", capitalize(thing)),
        ));
    }
    for (i, word) in WORDS.iter().enumerate() {
        let n = word.chars().count();
        let question = if i % 2 == 0 {
            format!("How many letters are in the word \"{word}\"?")
        } else {
            format!("Count the letters in \"{word}\".")
        };
        out.push((question, format!("The word {word} has {n} letters.")));
        out.push((
            format!("What is the last letter of \"{word}\"?"),
            format!(
                "The last letter of {word} is {}.",
                word.chars().last().unwrap_or(' ')
            ),
        ));
        out.push((
            format!("What is the first letter of \"{word}\"?"),
            format!(
                "The first letter of {word} is {}.",
                word.chars().next().unwrap_or(' ')
            ),
        ));
    }
    for (i, day) in DAYS.iter().enumerate() {
        let next = DAYS[(i + 1) % DAYS.len()];
        let before = DAYS[(i + DAYS.len() - 1) % DAYS.len()];
        out.push((
            format!("What day comes after {day}?"),
            format!("{next} comes after {day}."),
        ));
        out.push((
            format!("What day comes before {day}?"),
            format!("{before} comes before {day}."),
        ));
    }
    for (i, month) in MONTHS.iter().enumerate() {
        let next = MONTHS[(i + 1) % MONTHS.len()];
        out.push((
            format!("Which month comes after {month}?"),
            format!("{next} comes after {month}."),
        ));
        out.push((
            format!("What number month is {month}?"),
            format!("{month} is month number {} of the year.", i + 1),
        ));
    }
    for n in 1..=12u32 {
        let hours = if n == 1 {
            "an hour".to_string()
        } else {
            format!("{n} hours")
        };
        out.push((
            format!("How many minutes are in {hours}?"),
            format!("There are {} minutes in {hours}.", n * 60),
        ));
        let weeks = if n == 1 {
            "a week".to_string()
        } else {
            format!("{n} weeks")
        };
        out.push((
            format!("How many days are in {weeks}?"),
            format!("There are {} days in {weeks}.", n * 7),
        ));
        out.push((
            format!("What is half of {}?", n * 4),
            format!("Half of {} is {}.", n * 4, n * 2),
        ));
        out.push((
            format!("What is double {}?", n + 7),
            format!("Double {} is {}.", n + 7, 2 * (n + 7)),
        ));
    }
    for n in 2..=12u32 {
        out.push((
            format!("What is {n} squared?"),
            format!("{n} squared is {}.", n * n),
        ));
    }
    for n in 1..=30u32 {
        let parity = if n % 2 == 0 { "even" } else { "odd" };
        out.push((format!("Is {n} even or odd?"), format!("{n} is {parity}.")));
    }
    for (animal, legs) in LEGS {
        out.push((
            format!("How many legs does {} have?", with_article(animal)),
            format!("{} has {legs} legs.", capitalize(&with_article(animal))),
        ));
    }
    // Keep the first of any repeated question so no question lands in two splits.
    let mut seen = std::collections::HashSet::new();
    out.retain(|(question, _)| seen.insert(question.clone()));
    out
}

const LEGS: [(&str, u32); 10] = [
    ("dog", 4),
    ("chicken", 2),
    ("spider", 8),
    ("horse", 4),
    ("ant", 6),
    ("duck", 2),
    ("cat", 4),
    ("bee", 6),
    ("crab", 10),
    ("cow", 4),
];

fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
