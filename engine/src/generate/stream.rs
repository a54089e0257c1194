//! Text from a stream of tokens, piece by piece. A token need not end on a
//! character boundary (byte-level BPE splits multi-byte UTF-8 characters
//! across tokens), and some decoders change a token's text depending on
//! what precedes it (SentencePiece's leading space). So each step decodes a
//! short window of recent tokens twice, with and without the new ones, and
//! emits only the difference, holding text back while it ends in an
//! unfinished character.

use anyhow::{anyhow, Result};

/// What `decode` makes of bytes that are not (yet) valid UTF-8.
const REPLACEMENT: char = '\u{FFFD}';

pub struct StreamDecoder<'t> {
    tokenizer: &'t tokenizers::Tokenizer,
    skip_special_tokens: bool,
    tokens: Vec<u32>,
    /// Start of the context window: tokens before it are fully emitted and
    /// no longer affect the text of later ones.
    prefix_offset: usize,
    /// Tokens before this one have had their text emitted.
    read_offset: usize,
}

impl<'t> StreamDecoder<'t> {
    pub fn new(tokenizer: &'t tokenizers::Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            tokens: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// Adds one token; returns the text it completes (possibly empty, when
    /// the token ends inside a character or decodes to nothing).
    pub fn push(&mut self, token: u32) -> Result<String> {
        self.tokens.push(token);
        let prefix = self.decode(self.prefix_offset, self.read_offset)?;
        let full = self.decode(self.prefix_offset, self.tokens.len())?;
        if full.len() > prefix.len() && !full.ends_with(REPLACEMENT) {
            // `full` extends `prefix` except in odd decoders that rewrite
            // earlier text; then the longest common prefix is what stays.
            let start = if full.starts_with(&prefix) {
                prefix.len()
            } else {
                common_prefix_len(&prefix, &full)
            };
            let piece = full[start..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.tokens.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }

    /// Whatever is held back (an unfinished character at the very end of
    /// the stream comes out as U+FFFD).
    pub fn finish(&mut self) -> Result<String> {
        if self.read_offset == self.tokens.len() {
            return Ok(String::new());
        }
        let prefix = self.decode(self.prefix_offset, self.read_offset)?;
        let full = self.decode(self.prefix_offset, self.tokens.len())?;
        self.prefix_offset = self.tokens.len();
        self.read_offset = self.tokens.len();
        let start = common_prefix_len(&prefix, &full);
        Ok(full[start..].to_string())
    }

    /// Every token pushed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn decode(&self, start: usize, end: usize) -> Result<String> {
        self.tokenizer
            .decode(&self.tokens[start..end], self.skip_special_tokens)
            .map_err(|e| anyhow!("cannot decode tokens {:?}: {e}", &self.tokens[start..end]))
    }
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}
