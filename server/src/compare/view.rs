//! A stored comparison as its page and the API show it: losses and
//! perplexities, speeds, blind-vote win rates, and ballots.

use app::compare_dto::{
    Ballot, ColumnView, ComparisonView, GenerationSettings, OutputView, PromptView,
};

use crate::store::ComparisonRecord;

pub fn comparison_view(record: &ComparisonRecord) -> ComparisonView {
    let settings =
        serde_json::from_str::<GenerationSettings>(&record.settings_json).unwrap_or_default();
    let column_of = |output_id: i64| {
        record
            .outputs
            .iter()
            .find(|o| o.id == output_id)
            .map(|o| o.column_index)
    };
    let votes = record.votes.len();
    let columns = record
        .columns
        .iter()
        .map(|column| {
            let speeds: Vec<f64> = record
                .outputs
                .iter()
                .filter(|o| o.column_index == column.position && o.status == "done")
                .filter_map(|o| o.generation_tokens_per_sec)
                .filter(|s| *s > 0.0)
                .collect();
            let wins = record
                .votes
                .iter()
                .filter(|(_, output)| column_of(*output) == Some(column.position))
                .count();
            ColumnView {
                position: column.position,
                label: column.label.clone(),
                reference: column.adapter_ref.clone(),
                run_id: column.run_id,
                val_loss: column.val_loss,
                val_perplexity: column.val_loss.map(f64::exp),
                test_loss: column.test_loss,
                test_perplexity: column.test_loss.map(f64::exp),
                tokens_per_sec: (!speeds.is_empty())
                    .then(|| speeds.iter().sum::<f64>() / speeds.len() as f64),
                wins,
                win_rate: (votes > 0).then(|| wins as f64 / votes as f64),
            }
        })
        .collect();
    let prompts = record
        .prompts
        .iter()
        .map(|prompt| PromptView {
            position: prompt.position,
            display: prompt.display.clone(),
            reference: prompt.reference.clone(),
            origin: prompt.origin.clone(),
            outputs: record
                .outputs
                .iter()
                .filter(|o| o.prompt_index == prompt.position)
                .map(|o| OutputView {
                    id: o.id,
                    column: o.column_index,
                    status: super::output_status(&o.status, o.finish_reason.as_deref()).to_string(),
                    text: o.text.clone(),
                    error: o.error.clone(),
                    generated_tokens: o.generated_tokens.map(|n| n.max(0) as u64),
                    finish_reason: o.finish_reason.clone(),
                    tokens_per_sec: o.generation_tokens_per_sec,
                })
                .collect(),
        })
        .collect();
    ComparisonView {
        id: record.id,
        model: record.model_name.clone(),
        dataset: record.dataset_name.clone(),
        split: record.split.clone(),
        settings,
        // Stored `done`: a cancel ends a comparison as its outputs end, and
        // the page and API say which way it ended.
        status: if record.status == "done"
            && record
                .outputs
                .iter()
                .any(|o| o.finish_reason.as_deref() == Some(super::CANCELLED))
        {
            super::CANCELLED.to_string()
        } else {
            record.status.clone()
        },
        failure: record.failure.clone(),
        created_at: record.created_at.clone(),
        columns,
        prompts,
        votes,
    }
}

/// Prompt `prompt`'s finished outputs in an order drawn from `shuffle_seed`,
/// labelled A, B, C... so the voter cannot tell which column wrote which.
pub fn ballot(record: &ComparisonRecord, prompt: usize, shuffle_seed: u64) -> Option<Ballot> {
    let entry = record.prompts.get(prompt)?;
    let mut outputs: Vec<_> = record
        .outputs
        .iter()
        .filter(|o| o.prompt_index == prompt && o.status == "done")
        // A cut-short output would lose on length, not on merit.
        .filter(|o| o.finish_reason.as_deref() != Some(super::CANCELLED))
        .collect();
    let mut rng = engine::data::batching::SplitMix64::new(shuffle_seed);
    rng.shuffle(&mut outputs);
    Some(Ballot {
        comparison: record.id,
        prompt,
        prompts: record.prompts.len(),
        display: entry.display.clone(),
        reference: entry.reference.clone(),
        options: outputs
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                let letter = char::from(b'A' + (i as u8 % 26)).to_string();
                (letter, o.id, o.text.clone())
            })
            .collect(),
    })
}
