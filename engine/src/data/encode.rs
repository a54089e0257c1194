//! Examples to token ids, with the number of leading prompt tokens that take
//! no loss (`offset`), truncation at `max_seq_length`, and a preview of what
//! is trained for the UI.
//!
//! Everything is first rendered to one string and then tokenized without
//! the tokenizer's own special tokens, as transformers' `apply_chat_template`
//! does; a template that prints `bos_token` therefore yields one BOS, never
//! two. The prompt mask is found on that string: the prompt is the longest
//! common prefix of the whole conversation and the conversation up to the
//! last assistant message rendered with the generation prompt, so the
//! assistant header is masked and the answer with its end-of-turn token is
//! trained. Tokenizing the prompt separately (mlx-lm's way) can split the
//! boundary differently from the full text; offsets of one tokenization
//! cannot.

use serde::{Deserialize, Serialize};

use super::format::{ChatMessage, Example, Problem, Record, Role};
use crate::chat_template::ChatTemplate;
use crate::tokenizer::TokenizerBundle;

/// A token's byte range in the text it came from.
pub type Span = (usize, usize);

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, at most `max_seq_length` of them.
    pub tokens: Vec<u32>,
    /// Leading tokens that are prompt (no loss); at most `tokens.len()`.
    pub offset: usize,
    /// Length before truncation.
    pub full_length: usize,
}

impl Encoded {
    /// Tokens after the prompt that remain after truncation.
    /// Tokens the loss predicts: the kept tokens after the prompt, but never
    /// the first token of a sequence, which nothing comes before.
    pub fn trained_tokens(&self) -> usize {
        self.tokens.len().saturating_sub(self.first_trained())
    }

    /// Index of the first token that is a loss target.
    pub fn first_trained(&self) -> usize {
        self.offset.max(1)
    }

    pub fn truncated_tokens(&self) -> usize {
        self.full_length - self.tokens.len()
    }
}

/// An example with the text it was tokenized from and where each token sits
/// in it, for previews.
#[derive(Debug, Clone)]
pub struct EncodedText {
    pub encoded: Encoded,
    /// The rendered text, with any BOS/EOS the encoder added around it.
    pub text: String,
    /// Byte range of each token (of the untruncated sequence) in `text`.
    pub spans: Vec<Span>,
}

/// Turns examples into tokens for one tokenizer and configuration.
pub struct Encoder<'a> {
    bundle: &'a TokenizerBundle,
    template: Option<ChatTemplate>,
    mask_prompt: bool,
    max_seq_length: usize,
    bos: Option<(u32, String)>,
    eos: Option<(u32, String)>,
}

impl<'a> Encoder<'a> {
    /// Fails only when the bundle's chat template does not compile.
    pub fn new(
        bundle: &'a TokenizerBundle,
        mask_prompt: bool,
        max_seq_length: usize,
    ) -> Result<Self, String> {
        let template = ChatTemplate::from_bundle(bundle).map_err(|e| e.to_string())?;
        let special = |name: &Option<String>| {
            name.as_ref().and_then(|text| {
                bundle
                    .tokenizer
                    .token_to_id(text)
                    .map(|id| (id, text.clone()))
            })
        };
        let eos = special(&bundle.eos_token).or_else(|| {
            let id = *bundle.eos_token_ids.first()?;
            Some((id, bundle.tokenizer.id_to_token(id)?))
        });
        Ok(Self {
            bundle,
            template,
            mask_prompt,
            max_seq_length: max_seq_length.max(1),
            bos: special(&bundle.bos_token),
            eos,
        })
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Encodes one record; a failure names the record's file and line.
    pub fn encode(&self, record: &Record) -> Result<Encoded, Problem> {
        self.encode_text(record).map(|detail| detail.encoded)
    }

    /// [`Encoder::encode`] keeping the text and token spans.
    pub fn encode_text(&self, record: &Record) -> Result<EncodedText, Problem> {
        let fail = |message: String| Problem::line(&record.file, record.line, message);
        match &record.example {
            Example::Chat { messages, tools } => {
                let template = self
                    .template
                    .as_ref()
                    .ok_or_else(|| fail(NO_TEMPLATE.into()))?;
                let raw: Vec<minijinja::Value> = messages.iter().map(|m| m.raw.clone()).collect();
                self.encode_chat(template, &raw, messages, tools.as_ref())
                    .map_err(fail)
            }
            Example::Completions {
                prompt,
                completion,
                tools,
            } => match &self.template {
                // mlx-lm renders completions as a user turn and an assistant turn.
                Some(template) => {
                    let messages = [
                        ChatMessage::plain(Role::User, prompt),
                        ChatMessage::plain(Role::Assistant, completion),
                    ];
                    let raw: Vec<minijinja::Value> =
                        messages.iter().map(|m| m.raw.clone()).collect();
                    self.encode_chat(template, &raw, &messages, tools.as_ref())
                        .map_err(fail)
                }
                None => {
                    let prompt_bytes = if self.mask_prompt { prompt.len() } else { 0 };
                    self.encode_plain(&format!("{prompt}{completion}"), prompt_bytes)
                        .map_err(fail)
                }
            },
            Example::Text { text } => self.encode_plain(text, 0).map_err(fail),
        }
    }

    fn encode_chat(
        &self,
        template: &ChatTemplate,
        raw: &[minijinja::Value],
        messages: &[ChatMessage],
        tools: Option<&minijinja::Value>,
    ) -> Result<EncodedText, String> {
        let text = template
            .render(raw, tools, false)
            .map_err(|e| e.to_string())?;
        let prompt_bytes = match messages.iter().rposition(|m| m.role == Role::Assistant) {
            Some(last) if self.mask_prompt => {
                let prompt = template
                    .render(&raw[..last], tools, true)
                    .map_err(|e| e.to_string())?;
                common_prefix(&text, &prompt)
            }
            _ => 0,
        };
        let (ids, spans) = self.tokenize(&text)?;
        Ok(self.finish(text, ids, spans, prompt_bytes))
    }

    /// Text without a chat template: BOS when the tokenizer adds one, the
    /// text, and EOS unless the text already ends with it (mlx-lm's
    /// `TextDataset`).
    fn encode_plain(&self, body: &str, prompt_bytes: usize) -> Result<EncodedText, String> {
        let (mut ids, mut spans) = self.tokenize(body)?;
        let mut text = body.to_string();
        let mut prompt_bytes = prompt_bytes;
        if let Some((bos_id, bos_text)) = self.bos.as_ref().filter(|_| self.bundle.add_bos_token) {
            if ids.first() != Some(bos_id) {
                ids.insert(0, *bos_id);
                let shift = bos_text.len();
                spans
                    .iter_mut()
                    .for_each(|span| *span = (span.0 + shift, span.1 + shift));
                spans.insert(0, (0, shift));
                text.insert_str(0, bos_text);
                if prompt_bytes > 0 {
                    prompt_bytes += shift;
                }
            }
        }
        if let Some((eos_id, eos_text)) = &self.eos {
            if ids.last() != Some(eos_id) {
                ids.push(*eos_id);
                spans.push((text.len(), text.len() + eos_text.len()));
                text.push_str(eos_text);
            }
        }
        Ok(self.finish(text, ids, spans, prompt_bytes))
    }

    fn tokenize(&self, text: &str) -> Result<(Vec<u32>, Vec<Span>), String> {
        let encoding = self
            .bundle
            .tokenizer
            .encode(text, false)
            .map_err(|e| format!("tokenizer failed: {e}"))?;
        let mut ids = encoding.get_ids().to_vec();
        let mut spans = encoding.get_offsets().to_vec();
        // A text that spells out the BOS token twice (a template printing
        // `bos_token` over data that already starts with it) trains the
        // model on a sequence it never sees at inference.
        if let Some((bos_id, _)) = &self.bos {
            if ids.len() >= 2 && ids[0] == *bos_id && ids[1] == *bos_id {
                ids.remove(0);
                spans.remove(0);
            }
        }
        Ok((ids, spans))
    }

    fn finish(
        &self,
        text: String,
        ids: Vec<u32>,
        spans: Vec<(usize, usize)>,
        prompt_bytes: usize,
    ) -> EncodedText {
        // A token that straddles the boundary holds answer text: train it.
        let offset = if prompt_bytes == 0 {
            0
        } else {
            spans
                .iter()
                .take_while(|span| span.1 <= prompt_bytes)
                .count()
        };
        let full_length = ids.len();
        let mut tokens = ids;
        tokens.truncate(self.max_seq_length);
        EncodedText {
            encoded: Encoded {
                offset: offset.min(tokens.len()),
                tokens,
                full_length,
            },
            text,
            spans,
        }
    }
}

const NO_TEMPLATE: &str =
    "the model's tokenizer has no chat template, which chat examples need; use the completions or text format";

/// Length in bytes of the longest common prefix, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut end = 0;
    for ((i, ca), cb) in a.char_indices().zip(b.chars()) {
        if ca != cb {
            return i;
        }
        end = i + ca.len_utf8();
    }
    end
}

/// What a stretch of an example's text does in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentKind {
    /// Prompt: read by the model, no loss.
    Masked,
    /// Loss is computed on these tokens.
    Trained,
    /// Cut by `max_seq_length`: never seen.
    Truncated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub kind: SegmentKind,
    pub text: String,
    pub tokens: usize,
}

/// One example as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamplePreview {
    pub file: String,
    pub line: usize,
    pub segments: Vec<Segment>,
    /// Tokens kept after truncation.
    pub tokens: usize,
    pub trained_tokens: usize,
    pub truncated_tokens: usize,
}

impl ExamplePreview {
    pub fn from_encoded(record: &Record, detail: &EncodedText) -> Self {
        let encoded = &detail.encoded;
        let kept = encoded.tokens.len();
        // Byte where token `i` starts; the text's end past the last token.
        let start_of = |i: usize| -> usize {
            let byte = detail.spans.get(i).map_or(detail.text.len(), |span| span.0);
            floor_char_boundary(&detail.text, byte)
        };
        let bounds = [
            (SegmentKind::Masked, 0, encoded.first_trained().min(kept)),
            (
                SegmentKind::Trained,
                encoded.first_trained().min(kept),
                kept,
            ),
            (SegmentKind::Truncated, kept, encoded.full_length),
        ];
        let segments = bounds
            .iter()
            .filter(|(_, from, to)| to > from)
            .map(|&(kind, from, to)| {
                let start = if from == 0 { 0 } else { start_of(from) };
                let end = if to == encoded.full_length {
                    detail.text.len()
                } else {
                    start_of(to)
                };
                Segment {
                    kind,
                    text: detail.text[start..end.max(start)].to_string(),
                    tokens: to - from,
                }
            })
            .collect();
        Self {
            file: record.file.clone(),
            line: record.line,
            segments,
            tokens: kept,
            trained_tokens: encoded.trained_tokens(),
            truncated_tokens: encoded.truncated_tokens(),
        }
    }
}

fn floor_char_boundary(text: &str, mut byte: usize) -> usize {
    byte = byte.min(text.len());
    while !text.is_char_boundary(byte) {
        byte -= 1;
    }
    byte
}

/// Counts of token lengths (before truncation) in buckets of equal width.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LengthHistogram {
    /// Bucket `i` counts lengths in `[i * width, (i + 1) * width)`.
    pub bucket_width: usize,
    pub counts: Vec<usize>,
}

impl LengthHistogram {
    /// Buckets are a multiple of 32 wide (the batch padding step), at most
    /// about 16 of them.
    pub fn new(lengths: &[usize]) -> Self {
        let max = lengths.iter().copied().max().unwrap_or(0);
        let bucket_width = (max / 16 + 1).div_ceil(32) * 32;
        let mut counts = vec![0; max / bucket_width + 1];
        for &length in lengths {
            counts[length / bucket_width] += 1;
        }
        if lengths.is_empty() {
            counts.clear();
        }
        Self {
            bucket_width,
            counts,
        }
    }
}

/// Token figures for one split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStats {
    pub examples: usize,
    /// Tokens kept after truncation.
    pub tokens: usize,
    /// Tokens after the prompt mask, kept after truncation.
    pub trained_tokens: usize,
    pub min_length: usize,
    pub max_length: usize,
    /// Examples longer than `max_seq_length` and the tokens cut from them.
    pub truncated_examples: usize,
    pub truncated_tokens: usize,
    /// Examples whose prompt fills all of `max_seq_length`: they teach nothing.
    pub untrainable_examples: usize,
    pub histogram: Option<LengthHistogram>,
}

impl TokenStats {
    pub fn new(encoded: &[Encoded]) -> Self {
        let lengths: Vec<usize> = encoded.iter().map(|e| e.full_length).collect();
        Self {
            examples: encoded.len(),
            tokens: encoded.iter().map(|e| e.tokens.len()).sum(),
            trained_tokens: encoded.iter().map(Encoded::trained_tokens).sum(),
            min_length: lengths.iter().copied().min().unwrap_or(0),
            max_length: lengths.iter().copied().max().unwrap_or(0),
            truncated_examples: encoded.iter().filter(|e| e.truncated_tokens() > 0).count(),
            truncated_tokens: encoded.iter().map(Encoded::truncated_tokens).sum(),
            untrainable_examples: encoded.iter().filter(|e| e.trained_tokens() == 0).count(),
            histogram: (!lengths.is_empty()).then(|| LengthHistogram::new(&lengths)),
        }
    }
}
