"""Small Keras 3 models for tests/test_import.py: what a user brings to `gradconf import keras`."""
import keras


def sequential_cnn():
    """Conv -> pool -> conv (fused relu) -> flatten -> dense: a Keras Sequential CNN, channels last."""
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((8, 8, 2)),
                             keras.layers.Conv2D(3, 3, padding="same", activation="tanh", name="c1"),
                             keras.layers.MaxPooling2D(2, name="pool"),
                             keras.layers.Conv2D(4, 3, activation="relu", name="c2"),
                             keras.layers.Flatten(name="flat"),
                             keras.layers.Dense(5, name="fc")])


def functional_residual():
    """A functional model with a residual Add, a concat and batch norm (inference mode)."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inp)
    y = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(x)
    y = keras.layers.BatchNormalization(name="bn")(y)
    z = keras.layers.Add(name="res")([x, y])
    z = keras.layers.Concatenate(name="cat")([z, x])
    z = keras.layers.AveragePooling2D(2, name="pool")(z)
    z = keras.layers.Flatten(name="flat")(z)
    return keras.Model(inp, keras.layers.Dense(3, name="fc")(z))


def gap_head():
    """Conv -> batch norm (inference) -> relu -> global average pool -> dense: no Flatten before the Dense, so
    that its sums run in the same order as in the case (a Flatten's NHWC order is not the case's NCHW one)."""
    keras.utils.set_random_seed(5)
    return keras.Sequential([keras.Input((5, 5, 3)),
                             keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c"),
                             keras.layers.BatchNormalization(name="bn"),
                             keras.layers.ReLU(name="act"),
                             keras.layers.GlobalAveragePooling2D(name="gap"),
                             keras.layers.Dense(3, name="fc")])


def unmappable():
    inp = keras.Input((4, 4, 2))
    x = keras.layers.Conv3D(1, 1, name="c3d")(keras.layers.Reshape((4, 4, 2, 1))(inp))
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, keras.layers.LayerNormalization(name="ln_odd", axis=1)(x))
