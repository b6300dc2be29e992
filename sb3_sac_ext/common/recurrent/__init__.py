"""Recurrent (LSTM/GRU) policies for SAC and DiscreteSAC: sequence replay buffers, RNN layers, training helpers."""
