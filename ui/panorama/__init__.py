"""The operators' panoramic view, without Streamlit: the network's layout (geographic and schematic),
energisation from the live switching state, the classification of every bus and branch, and the
plotly figure (one WebGL trace per class, so a 10,000-bus grid draws in a browser in about a second)."""
