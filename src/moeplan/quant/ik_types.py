"""Tensor types of ik_llama.cpp files (IQ*_K, *_KS, *_KT, *_R4 …), which MoE users run and mainline
llama.cpp cannot load: ids, block sizes and bytes per block as ik_llama.cpp's gguf-py declares them
(`gguf-py/gguf/constants.py` GGMLQuantizationType, GGML_QUANT_SIZES), and the per-row metadata bytes
its `ggml/src/ggml.c` type_traits add to every row (`row_meta_size`: a row is row_meta_size +
type_size * ne0 / block bytes, `ggml_row_size`). Read at ikawrakow/ik_llama.cpp@8337e4cd (2026-08-15).

Only the ids mainline does not use are listed (0-30 and 39 mean the same in both). I2_S (36, BitNet
ternary) is left out: ggml_nbytes sizes it by a special case this table does not express.
"""

from enum import IntEnum
from typing import NamedTuple


class IKType(IntEnum):
    Q4_0_4_4 = 31
    Q4_0_4_8 = 32
    Q4_0_8_8 = 33
    Q8_0_X4 = 97
    Q8_1_X4 = 98
    Q8_2_X4 = 99
    Q6_0 = 133
    IQ1_BN = 134
    IQ2_BN = 135
    Q8_K64 = 136
    IQ2_K = 137
    IQ3_K = 138
    IQ4_K = 139
    IQ5_K = 140
    IQ6_K = 141
    IQ4_KS = 144
    IQ2_KS = 145
    IQ4_KSS = 146
    Q8_K16 = 147
    Q8_K32 = 148
    Q8_KR8 = 149
    Q8_K128 = 150
    Q8_KV = 151
    IQ5_KS = 152
    IQ2_KT = 153
    IQ3_KT = 154
    IQ4_KT = 155
    IQ3_KS = 156
    IQ2_KL = 157
    IQ1_KT = 158
    Q4_0_R8 = 202
    Q5_0_R4 = 206
    Q8_0_R8 = 208
    Q2_K_R4 = 210
    Q3_K_R4 = 211
    Q4_K_R4 = 212
    Q5_K_R4 = 213
    Q6_K_R4 = 214
    IQ2_XXS_R4 = 216
    IQ2_XS_R4 = 217
    IQ3_XXS_R4 = 218
    IQ1_S_R4 = 219
    IQ4_NL_R4 = 220
    IQ3_S_R4 = 221
    IQ2_S_R4 = 222
    IQ4_XS_R8 = 223
    IQ1_M_R4 = 229
    BF16_R16 = 230
    Q6_0_R4 = 233
    IQ2_BN_R4 = 335
    IQ2_K_R4 = 337
    IQ3_K_R4 = 338
    IQ4_K_R4 = 339
    IQ5_K_R4 = 340
    IQ4_KS_R4 = 344
    IQ5_KS_R4 = 352
    Q8_KV_R8 = 398
    Q8_K_R8 = 399


class IKLayout(NamedTuple):
    block: int  # values per block
    type_size: int  # bytes per block
    row_meta: int  # bytes each row carries besides its blocks


IK_LAYOUT: dict[IKType, IKLayout] = {
    IKType.Q4_0_4_4: IKLayout(32, 18, 0),
    IKType.Q4_0_4_8: IKLayout(32, 18, 0),
    IKType.Q4_0_8_8: IKLayout(32, 18, 0),
    IKType.Q8_0_X4: IKLayout(32, 34, 0),
    IKType.Q8_1_X4: IKLayout(32, 36, 0),
    IKType.Q8_2_X4: IKLayout(32, 36, 0),
    IKType.Q6_0: IKLayout(32, 26, 0),
    IKType.IQ1_BN: IKLayout(64, 13, 2),
    IKType.IQ2_BN: IKLayout(64, 16, 4),
    IKType.Q8_K64: IKLayout(64, 68, 0),
    IKType.IQ2_K: IKLayout(256, 76, 0),
    IKType.IQ3_K: IKLayout(256, 110, 0),
    IKType.IQ4_K: IKLayout(256, 144, 0),
    IKType.IQ5_K: IKLayout(256, 176, 0),
    IKType.IQ6_K: IKLayout(256, 212, 0),
    IKType.IQ4_KS: IKLayout(256, 136, 4),
    IKType.IQ2_KS: IKLayout(256, 70, 2),
    IKType.IQ4_KSS: IKLayout(256, 128, 4),
    IKType.Q8_K16: IKLayout(64, 64, 20),
    IKType.Q8_K32: IKLayout(256, 292, 0),
    IKType.Q8_KR8: IKLayout(256, 292, 0),
    IKType.Q8_K128: IKLayout(128, 140, 0),
    IKType.Q8_KV: IKLayout(32, 32, 8),
    IKType.IQ5_KS: IKLayout(256, 168, 4),
    IKType.IQ2_KT: IKLayout(256, 68, 4),
    IKType.IQ3_KT: IKLayout(256, 100, 4),
    IKType.IQ4_KT: IKLayout(256, 128, 4),
    IKType.IQ3_KS: IKLayout(256, 102, 2),
    IKType.IQ2_KL: IKLayout(256, 86, 2),
    IKType.IQ1_KT: IKLayout(256, 56, 4),
    IKType.Q4_0_R8: IKLayout(32, 18, 0),
    IKType.Q5_0_R4: IKLayout(32, 22, 0),
    IKType.Q8_0_R8: IKLayout(32, 34, 0),
    IKType.Q2_K_R4: IKLayout(256, 84, 0),
    IKType.Q3_K_R4: IKLayout(256, 110, 0),
    IKType.Q4_K_R4: IKLayout(256, 144, 0),
    IKType.Q5_K_R4: IKLayout(256, 176, 0),
    IKType.Q6_K_R4: IKLayout(256, 210, 0),
    IKType.IQ2_XXS_R4: IKLayout(256, 66, 0),
    IKType.IQ2_XS_R4: IKLayout(256, 74, 0),
    IKType.IQ3_XXS_R4: IKLayout(256, 98, 0),
    IKType.IQ1_S_R4: IKLayout(32, 6, 2),
    IKType.IQ4_NL_R4: IKLayout(32, 18, 0),
    IKType.IQ3_S_R4: IKLayout(256, 110, 0),
    IKType.IQ2_S_R4: IKLayout(256, 82, 0),
    IKType.IQ4_XS_R8: IKLayout(256, 136, 0),
    IKType.IQ1_M_R4: IKLayout(32, 7, 2),
    IKType.BF16_R16: IKLayout(1, 2, 0),
    IKType.Q6_0_R4: IKLayout(32, 26, 0),
    IKType.IQ2_BN_R4: IKLayout(64, 16, 4),
    IKType.IQ2_K_R4: IKLayout(256, 76, 0),
    IKType.IQ3_K_R4: IKLayout(256, 110, 0),
    IKType.IQ4_K_R4: IKLayout(256, 144, 0),
    IKType.IQ5_K_R4: IKLayout(256, 176, 0),
    IKType.IQ4_KS_R4: IKLayout(256, 136, 4),
    IKType.IQ5_KS_R4: IKLayout(256, 168, 4),
    IKType.Q8_KV_R8: IKLayout(32, 32, 4),
    IKType.Q8_K_R8: IKLayout(256, 258, 0),
}


def row_bytes(t: IKType, ne0: int) -> int:
    """`ggml_row_size` of ik_llama.cpp; a row must hold whole blocks."""
    lay = IK_LAYOUT[t]
    if ne0 % lay.block:
        raise ValueError(f"row of {ne0} elements is not a multiple of the {t.name} block ({lay.block})")
    return lay.row_meta + ne0 // lay.block * lay.type_size
