//! llama.cpp tensor names to Hugging Face names, and the undoing of
//! llama.cpp's reordering of Llama's Q and K rows.

/// Per-block tensors: llama.cpp suffix -> HF module path inside a layer.
const BLOCK_NAMES: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_qkv", "self_attn.qkv_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// The HF name of a GGUF tensor for `architecture`, or None when the tensor
/// has no place in an HF checkpoint of that family.
pub fn hf_name(architecture: &str, gguf_name: &str) -> Option<String> {
    let (module, param) = gguf_name.rsplit_once('.')?;
    if !matches!(param, "weight" | "bias") {
        return None;
    }
    let hf_module = match module {
        "token_embd" => "model.embed_tokens".to_string(),
        "output_norm" => "model.norm".to_string(),
        "output" => "lm_head".to_string(),
        _ => {
            let rest = module.strip_prefix("blk.")?;
            let (layer, suffix) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let hf = match (architecture, suffix) {
                // Phi-3 keeps gate and up as one matrix, as its HF checkpoint does.
                ("phi3", "ffn_up") => "mlp.gate_up_proj",
                _ => BLOCK_NAMES.iter().find(|(g, _)| *g == suffix)?.1,
            };
            format!("model.layers.{layer}.{hf}")
        }
    };
    Some(format!("{hf_module}.{param}"))
}

/// Tensors llama.cpp writes that carry no weights of their own in HF form.
pub fn is_auxiliary(gguf_name: &str) -> bool {
    // Llama 3.x rope scaling as per-frequency factors; read into the config.
    gguf_name == "rope_freqs.weight"
}

/// Whether llama.cpp permuted this tensor's rows (convert_hf_to_gguf.py's
/// `permute` for Llama Q and K, weights and biases), with the head count used.
pub fn permuted_heads(
    architecture: &str,
    gguf_name: &str,
    n_head: usize,
    n_head_kv: usize,
) -> Option<usize> {
    if architecture != "llama" {
        return None;
    }
    let module = gguf_name.rsplit_once('.')?.0;
    let suffix = module.strip_prefix("blk.")?.split_once('.')?.1;
    match suffix {
        "attn_q" => Some(n_head),
        "attn_k" => Some(n_head_kv),
        _ => None,
    }
}

/// The rows llama.cpp's Q/K permutation moves for a tensor of GGUF `dims`
/// (the contiguous one first): a bias permutes like a one-column weight.
pub fn permuted_row_count(dims: &[u64]) -> usize {
    match dims {
        [len] => *len as usize,
        [_, outer @ ..] => outer.iter().product::<u64>() as usize,
        [] => 0,
    }
}

/// Undoes llama.cpp's Q/K row permutation on raw tensor bytes. llama.cpp
/// stores head `h`'s row `2i + j` (interleaved RoPE pairs) where HF has row
/// `j * head_dim / 2 + i` (rotate-half pairs). Rows are moved whole, so this
/// works for every storage type: a quantized row's scales move with it.
pub fn unpermute_rows(bytes: &[u8], rows: usize, n_head: usize) -> Result<Vec<u8>, String> {
    move_rows(bytes, rows, n_head, |hf_row, gguf_row| (hf_row, gguf_row))
}

/// The llama.cpp name of an HF tensor of `architecture` (the inverse of
/// [`hf_name`]), or None for a tensor llama.cpp has no place for.
pub fn gguf_name(architecture: &str, hf: &str) -> Option<String> {
    let (module, param) = hf.rsplit_once('.')?;
    if !matches!(param, "weight" | "bias") {
        return None;
    }
    let gguf_module = match module {
        "model.embed_tokens" => "token_embd".to_string(),
        "model.norm" => "output_norm".to_string(),
        "lm_head" => "output".to_string(),
        _ => {
            let rest = module.strip_prefix("model.layers.")?;
            let (layer, suffix) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let gguf = match (architecture, suffix) {
                ("phi3", "mlp.gate_up_proj") => "ffn_up",
                _ => BLOCK_NAMES.iter().find(|(_, h)| *h == suffix)?.0,
            };
            format!("blk.{layer}.{gguf}")
        }
    };
    Some(format!("{gguf_module}.{param}"))
}

/// llama.cpp's Q/K row permutation (convert_hf_to_gguf.py's `permute`),
/// the inverse of [`unpermute_rows`]: HF row `j * head_dim / 2 + i` of
/// head `h` goes to row `2i + j`.
pub fn permute_rows(bytes: &[u8], rows: usize, n_head: usize) -> Result<Vec<u8>, String> {
    move_rows(bytes, rows, n_head, |hf_row, gguf_row| (gguf_row, hf_row))
}

/// Copies whole rows between the HF and llama.cpp orders of each head;
/// `to_from(hf_row, gguf_row)` says which is the destination and which the
/// source, so both directions share the index arithmetic.
fn move_rows(
    bytes: &[u8],
    rows: usize,
    n_head: usize,
    to_from: impl Fn(usize, usize) -> (usize, usize),
) -> Result<Vec<u8>, String> {
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(format!(
            "{rows} rows cannot be split into {n_head} heads of an even size"
        ));
    }
    if !bytes.len().is_multiple_of(rows) {
        return Err(format!(
            "{} bytes do not split into {rows} rows",
            bytes.len()
        ));
    }
    let row_bytes = bytes.len() / rows;
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0u8; bytes.len()];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                let (to, from) = to_from(h * head_dim + j * half + i, h * head_dim + 2 * i + j);
                out[to * row_bytes..(to + 1) * row_bytes]
                    .copy_from_slice(&bytes[from * row_bytes..(from + 1) * row_bytes]);
            }
        }
    }
    Ok(out)
}
