"""From token ids to text deltas: incremental detokenization (`detokenize`), a byte table for
byte-level BPE vocabularies (`byte_vocab`), and one step's ids for every stream (`choices`)."""
