"""Figure captions of the reports: what each figure shows, and what a good and a bad result look like."""

FD = ("Framewise displacement (head motion between volumes, Power et al. 2012) from fMRIPrep's confounds table; "
      "dashed line: the scrubbing threshold. Good: mostly below 0.2 mm with few spikes. Bad: many volumes above "
      "the threshold; motion bursts can look like dynamics to the model.")
CARPET = ("Carpet plot (nilearn): every voxel inside the atlas as a row, detrended and standardised, against time. "
          "Good: fine texture without structure across all rows. Bad: full-height vertical bands (motion, "
          "scanner artefacts) that the cleaned series may still carry.")
ATLAS = ("The atlas regions over the run's mean image. Good: regions lie on the brain and follow its shape. Bad: "
         "regions outside the brain or shifted (wrong template space or failed registration).")
QUALITY = ("D_stsp compares the state-space distribution and D_H the power spectra of generated series with the "
           "held-out test part (Volkmann et al. 2024); lower is better, and a convSSM that does not beat the "
           "linear reference has not shown nonlinear structure. These numbers describe the fit, not the "
           "participant.")
DATA_FLOOR = ("The data floor scores stretches of the recording's own training part, as long as the test part, "
              "as if they were samples: no model can be expected to do much better, so where the floor itself "
              "is barely below VAR(1), these data leave a nonlinear model little room to show more.")
DATA_VS_GENERATED = ("Left: the data per region (orange band: the held-out test part the model never trained "
                     "on). Middle: the convSSM run freely from its own initial state; right: a sample of the VAR(1) "
                     "reference. These are not forecasts, so do not compare peaks in time; compare amplitude, rhythm "
                     "and how regions fluctuate together. Good: generated series with the data's amplitude and slow "
                     "fluctuations, staying bounded. Bad: a flat line (decay to a fixed point) where the data "
                     "fluctuate, growth without bound, or a fast regular oscillation the data do not have.")
SPECTRA = ("Mean power spectrum over regions of the data, the convSSM's generated series and the VAR(1) sample. "
           "Good: the convSSM's curve follows the data's (small D_H). Bad: power at a single sharp peak, or "
           "missing at the low frequencies where BOLD has most of its power.")
CURVE = ("Training loss (black, log scale) and forcing strength α (orange) per epoch. Good: the loss falls and "
         "levels off while α falls as the model learns to run on its own. Bad: a loss still falling steeply at the "
         "last epoch (train longer) or jumping up (instability).")
ATTRACTOR_2D = ("The latent orbit after its transient, in its first two principal components (grey: the "
                "generated series' latents; dots: fixed points, filled when stable). A point is a fixed point, a "
                "closed loop a cycle, a filled band quasi-periodic or chaotic motion. Bad: a single point when the "
                "data fluctuate — the model has learned decay, not dynamics.")
ATTRACTOR_3D = "The same orbit in its first three latent dimensions; the shape should match the 2-D view."
LYAPUNOV = ("Lyapunov spectrum (per second): positive exponents (red) mean nearby orbits separate (chaos); all "
            "negative means a stable fixed point or cycle. Exponents near 0 are within the estimation error of "
            "short scans; judge them with the held-out fit quality above.")
FIXED_POINTS = ("Eigenvalues of the Jacobian at each fixed point and 2-cycle (SCYFI) against the unit circle; "
                "inside the circle is a stable direction. No fixed point found is not an error; eigenvalues far "
                "outside the circle point to an unstable model.")
FEATURES = ("Each point is one participant (the mean over its fits), the line the median. Only features with at "
            "least three distinct values are drawn.")
COVARIATES = ("The tests with the smallest p-values, each titled with its test, permutation p and FDR q. A "
              "scatter without a q below 0.05 is not a finding.")
DISTANCES = ("Between-participant distances of the generated series (each z-scored). Participants with similar "
             "reconstructed dynamics are close; the diagonal is 0.")
EMBEDDING = "Classical MDS of the D_stsp distances; nearby points have similar reconstructed dynamics."
