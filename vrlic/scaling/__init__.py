"""The scaling study (``make scaling``): does the variable-rate gap close with compute?

    grid      the grid points (architecture, width, base budget, λ range, post-training budget,
              seed), their keys and costs
    run       trains and measures missing points, one small results file each (``results/scaling/``)
    summary   the gap per arm over seeds, the paired contrasts, the trend and the one-sentence answer
"""
