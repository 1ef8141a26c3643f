"""Every figure and table of the book: one function each, from tidy rows (`perfmamba.experiments`) or claim
records; no measuring here. The notebooks, the book and scripts call the same functions.

    plot_fig2_latency        Fig. 2   per-component time vs sequence length, prefill / decode
    graph_decode_table       Fig. 2   time per output token of the CUDA-graph decode step (GPU rows)
    table1_components        Table 1  per-component share of time and memory
    ssm_memory_table         §4       the SSM's memory, Mamba-2 against Mamba-1
    plot_fig3_state_activity Fig. 3   activity(l, s) heatmaps, one panel per model (plot_fig3_activity: one)
    plot_fig4_accuracy       Fig. 4   quality vs pruning ratio
    table2_efficiency        Table 2  time, speed-up and memory of pruned models vs dense
    plot_fig5_efficiency     Fig. 5   speed-up and memory reduction vs sequence length, per ratio
    plot_fig6_tradeoff       Fig. 6   quality against speed-up as r varies
    plot_criteria            ext      perplexity vs ratio per pruning criterion (Δ against random)
    plot_roofline_measured   ext      components on this machine's measured roofline (plot_roofline: any roof)
    plot_decode_state_traffic ext     weight vs recurrent-state bytes of a decode step; ideal vs measured speed-up
    plot_recall              ext      associative-recall accuracy of pruned models
    table_kernels            ext      committed GPU kernel results
    plot_claims_summary      claims   how many claims of each status, per section of the paper
    plot_table1_flops        claims   Table 1's FLOPs as a grid of paper / ours ratios
    plot_table1_shares       claims   Table 1's shares, the paper beside ours
    plot_table2_claims       claims   Table 2 beside our whole-call measurements

Every function raises `PlotError` (or the profiling/pruning modules' own error) on rows it cannot draw, so a
missing result shows up as an error in the notebook, never as an empty figure.
"""
from ..errors import PlotError
from .claims import plot_claims_summary, plot_table1_flops, plot_table1_shares, plot_table2_claims
from .profile import (COLORS, graph_decode_table, plot_fig2_latency, plot_roofline, share_table, ssm_memory_table,
                      table1_components)
from .pruning import (plot_criteria, plot_decode_state_traffic, plot_fig3_activity, plot_fig3_state_activity,
                      plot_fig4_accuracy, plot_fig5_efficiency, plot_fig6_tradeoff, plot_recall, plot_roofline_measured,
                      table2_efficiency, table_kernels)

__all__ = ["PlotError", "COLORS", "plot_fig2_latency", "share_table", "graph_decode_table", "table1_components",
           "ssm_memory_table", "plot_fig3_activity", "plot_fig3_state_activity", "plot_fig4_accuracy",
           "table2_efficiency", "plot_fig5_efficiency", "plot_fig6_tradeoff", "plot_criteria", "plot_roofline",
           "plot_roofline_measured", "plot_decode_state_traffic", "plot_recall", "table_kernels",
           "plot_claims_summary", "plot_table1_flops", "plot_table1_shares", "plot_table2_claims"]
