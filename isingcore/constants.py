"""Critical constants of the square-lattice Ising model, each with its reference.

All couplings are in units of J (ferromagnetic nearest-neighbour coupling), K = beta*J.
"""

import math

#: Critical coupling K_c = ln(1 + sqrt 2) / 2 (Kramers & Wannier, Phys. Rev. 60, 252 (1941);
#: Onsager, Phys. Rev. 65, 117 (1944)).
BETA_C = 0.5 * math.log(1.0 + math.sqrt(2.0))
K_C = BETA_C

#: Nearest-neighbour correlation at K_c on the infinite lattice, <s_i s_{i+x}> = 1/sqrt 2
#: (equivalently the critical energy per site u_c = -sqrt 2; Onsager 1944).
NN_CORRELATION_C = 1.0 / math.sqrt(2.0)

#: Diagonal next-nearest-neighbour correlation at K_c, <s_{0,0} s_{1,1}> = 2/pi
#: (B. M. McCoy & T. T. Wu, The Two-Dimensional Ising Model, Harvard 1973, ch. XI).
DIAGONAL_CORRELATION_C = 2.0 / math.pi

#: Critical energy per site u_c = -J sqrt 2 (two bonds per site times 1/sqrt 2).
ENERGY_C = -math.sqrt(2.0)

#: Binder cumulant U4 = 1 - <m^4>/(3<m^2>^2) at K_c for L -> infinity on periodic square tori,
#: 0.61069... (G. Kamieniarz & H. W. J. Bloete, J. Phys. A 26, 201 (1993); J. Salas & A. D. Sokal,
#: J. Stat. Phys. 98, 551 (2000): 0.6106901(5)).
BINDER_C = 0.61069

#: Critical exponents of the 2D Ising universality class (exact, Onsager/Yang/Fisher):
#: nu = 1, beta = 1/8, gamma = 7/4, eta = 1/4, alpha = 0 (log), delta = 15.
NU = 1.0
BETA_EXPONENT = 0.125
GAMMA = 1.75
ETA = 0.25
#: RG eigenvalue exponents y_t = 1/nu = 1 and y_h = 2 - beta/nu = 15/8.
Y_T = 1.0
Y_H = 15.0 / 8.0

#: zeta'(-1) = 1/12 - ln(Glaisher-Kinkelin constant).
ZETA_PRIME_MINUS_1 = 1.0 / 12.0 - 0.24875447703378426
#: Amplitude of the critical spin-spin correlation G(r) ~ A r^(-1/4) at K_c, r Euclidean:
#: A = 2^(5/24) exp(3 zeta'(-1)) = 0.70338... The diagonal form <s_00 s_NN> ~ 2^(1/12) e^{3 zeta'(-1)} N^(-1/4)
#: (T. T. Wu, Phys. Rev. 149, 380 (1966); McCoy & Wu 1973, ch. XI) with r = N sqrt 2.
G_AMPLITUDE_C = 2.0 ** (5.0 / 24.0) * math.exp(3.0 * ZETA_PRIME_MINUS_1)

__all__ = [
    "BETA_C", "K_C", "NN_CORRELATION_C", "DIAGONAL_CORRELATION_C", "ENERGY_C", "BINDER_C",
    "NU", "BETA_EXPONENT", "GAMMA", "ETA", "Y_T", "Y_H", "G_AMPLITUDE_C",
]
