"""Learning-quality suite (issue 22): planted-moment sets in real on-disk layouts, each with
an oracle (the ceiling), and a runner that trains CI-MHA, a linear probe and a VSLNet-style
reference on them (`python -m bench.learning.run`; docs/learning.md has the results).

One module per set kind; each has SPECS, a tuple of planted.SetSpec (several for the
signal-to-noise sweep). planted.py writes and scores them; compositional.py is the issue's
held-out kind (verb + object queries whose words recur elsewhere in the video).
"""
