"""Where training pairs come from: HR sources (folders, the memory-mapped store, the photos
scikit-image and matplotlib ship), image reading and writing, patches, degradations
(bicubic, crapify, Real-ESRGAN's second order) and the LightningDataModule.

Imports only `ops` and `errors`: data never knows which approach or net consumes it.
"""
