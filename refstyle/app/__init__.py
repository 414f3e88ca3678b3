"""The application: the command line (parser, commands), validation of other implementations,
``refstyle explain``, and the paper's figure grids. It uses the library below it and
nothing imports it but the console script.
"""
