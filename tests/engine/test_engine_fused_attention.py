"""The fused-attention hint reads tactics and layer types, not the names every attention carries."""
from __future__ import annotations

from spvit_deploy.engine.runner import fused_attention_layers


def test_plain_attention_layers_are_not_reported_as_fused() -> None:
    layers = [
        {"Name": "/blocks.0/attn/qkv/MatMul", "LayerType": "MatrixMultiply", "TacticName": "sm90_xmma_gemm_f16f16"},
        {"Name": "/blocks.0/attn/Softmax", "LayerType": "SoftMax", "TacticName": "softmax_kernel"},
        {"Name": "{ForeignNode[/blocks.0/attn/MatMul.../blocks.0/attn/proj/MatMul]}", "LayerType": "Myelin",
         "TacticName": "__myl_Gemm"},
        "/blocks.1/attn/MatMul",  # a name-only inspector format says nothing about fusion
    ]
    assert fused_attention_layers(layers) == []


def test_fused_attention_tactics_are_reported() -> None:
    layers = [
        {"Name": "mha_0", "LayerType": "kgen", "TacticName": "_gemm_mha_v2_fp16_128_64_sm90"},
        {"Name": "{ForeignNode[/blocks.3/attn/MatMul]}", "LayerType": "Myelin", "TacticName": "fmha_v2_flash_attention"},
        {"Name": "/blocks.3/mlp/fc1/MatMul", "LayerType": "MatrixMultiply", "TacticName": "sm90_xmma_gemm"},
    ]
    assert fused_attention_layers(layers) == ["mha_0", "{ForeignNode[/blocks.3/attn/MatMul]}"]
