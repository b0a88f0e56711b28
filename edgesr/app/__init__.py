"""The app layer: the pipeline (`edgesr run`), validation, golden vectors, profiling, reports
and the one artifact opener. It may import every layer below it."""
