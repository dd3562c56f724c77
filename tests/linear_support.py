"""A convSSM that is a known linear system, for the noise and sampling tests."""
import numpy as np
import torch

from dsr.models.convssm import ConvSSM, ConvSSMSpec

TR = 2.0
A_TRUE = np.array([0.9, 0.8, 0.95])


def linear_model(h) -> ConvSSM:
    """A cshPLRNN with W1 = 0: the linear system z_{t+1} = diag(A_TRUE) z_t, 3 latents read out as 3 regions."""
    spec = ConvSSMSpec("cshPLRNN", 3, 4, "identity", n_obs=3, tr=TR)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), [0], dtype=torch.float64)
    model.params["latent.W1"].zero_()
    model.params["latent.A"] = torch.as_tensor(A_TRUE)[None]
    return model
