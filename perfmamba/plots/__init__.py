"""Every figure and table of the book: one function each (its docstring names the figure), from tidy rows
(`perfmamba.experiments`) or claim records; no measuring here. The notebooks, the book and scripts call the
same functions: `profile` draws Fig. 2, Table 1 and the roofline, `pruning` Fig. 3–6, Table 2 and the
extensions, `claims` the claims page.

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
