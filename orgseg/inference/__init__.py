"""Segmenting CTs with a trained model: loading, the chunked engine, outputs, batches."""
