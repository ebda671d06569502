"""The data: images and labels from a Keras data set, an .npz, IDX files or image folders, made to the run's shape,
and whether they fit in memory. Imports no TensorFlow (downloading a Keras-named set aside) and nothing of the job
but its configuration's errors: what refuses bad data runs before TensorFlow loads."""
