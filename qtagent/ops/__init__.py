"""Operations: the verbs of qtagent, composing readers, planners, effects, the store and libvirt."""
