from .complexity import FLOP_CONVENTION, count_flops, count_params, measure_latency, paper_tables

__all__ = ['FLOP_CONVENTION', 'count_flops', 'count_params', 'measure_latency', 'paper_tables']
